"""The backbone registry, in the shape every rtcore registry has (:class:`rtcore.registry.Registry`).

Verbs: :func:`register_backbone`, :func:`list_backbones`, :func:`backbone_info`, :func:`create_backbone`.
Entries (:class:`BackboneSpec`) are the bundled backbones (one per model card in ``assets/backbones``),
the backbone shipped inside pyautoattack (listed when the package is installed), user-registered
factories and a few timm examples; any other timm model is created as ``"timm:<model>"``, and a
torchvision classification model as ``"torchvision:<model>"`` (local weights only, see
:mod:`rtcore.models.tvmodels`). :func:`check_backbone_name` accepts exactly what :func:`create_backbone` does.

The entries are built once per process. What can change while a process runs is looked up when
asked: whether pyautoattack is installed (a module search) and whether a timm example's
pretrained weights are in the local Hugging Face cache (a few file-system lookups, no timm import,
no network), so ``offline`` is always current.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..config import resolve_cache_dir
from ..errors import BackboneUnavailableError
from ..registry import Registry
from .bundled import BUNDLED_DIR, create_bundled_backbone, read_card
from .checkpoints import load_safetensors, load_state_dict_into
from .hub import TIMM_PREFIX, create_timm_backbone, timm_weights_available_offline
from .tvmodels import TORCHVISION_PREFIX, create_torchvision_backbone, torchvision_arch
from .thirdparty import (
    AUTOATTACK_RESNET18,
    INSTALL_HINT,
    PACKAGE,
    create_autoattack_resnet18,
    model_card,
    package_available,
)
from .wrapper import Backbone, as_backbone, resolve_device


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry. ``kind``: ``bundled`` | ``package`` | ``custom`` | ``timm`` | ``torchvision``;
    ``offline``: whether it can be created with no network; ``factory(*, weights, pretrained, cache_dir,
    use_cache)`` builds it."""

    name: str
    kind: str
    description: str
    offline: bool
    factory: Callable[..., Backbone] = field(repr=False, compare=False)


BACKBONES: Registry[BackboneSpec] = Registry("backbone", hint="or 'timm:<model>' for any timm model")

# timm models listed in the registry as examples; any other timm name works as "timm:<name>".
TIMM_EXAMPLES: dict[str, str] = {
    "resnet18.a1_in1k": "ResNet-18, ImageNet-1k (needs the pretrained weights: download or local file)",
    "convnext_atto.d2_in1k": "ConvNeXt-Atto, ImageNet-1k (needs the pretrained weights)",
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k": "ViT-Tiny/16, ImageNet-21k -> 1k (needs the pretrained weights)",
}
_KIND_ORDER = {"bundled": 0, "package": 1, "custom": 2, "timm": 3}
_BUILT = False
_BUILD_LOCK = threading.Lock()


def _bundled_factory(name: str) -> Callable[..., Backbone]:
    def make(*, weights: str | os.PathLike[str] | None = None, pretrained: bool = True,
             cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True) -> Backbone:
        return create_bundled_backbone(name, weights=weights, pretrained=pretrained)  # writes nothing

    return make


def _torchvision_factory(model_name: str) -> Callable[..., Backbone]:
    def make(*, weights: str | os.PathLike[str] | None = None, pretrained: bool = True,
             cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True) -> Backbone:
        return create_torchvision_backbone(model_name, weights=weights, pretrained=pretrained)  # writes nothing

    return make


def _timm_factory(model_name: str) -> Callable[..., Backbone]:
    def make(*, weights: str | os.PathLike[str] | None = None, pretrained: bool = True,
             cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True, **kw: Any) -> Backbone:
        return create_timm_backbone(model_name, weights=weights, pretrained=pretrained, **kw)

    return make


def _build() -> None:
    """Register the built-in entries, once per process (before any user entry, so names cannot collide)."""
    global _BUILT
    with _BUILD_LOCK:
        if _BUILT:
            return
        for card_path in sorted(BUNDLED_DIR.glob("*.json")):
            name = card_path.stem
            try:
                desc = json.loads(card_path.read_text()).get("description", name)
            except (OSError, json.JSONDecodeError, AttributeError):
                desc = f"{name} (unreadable model card)"
            BACKBONES.register(BackboneSpec(name, "bundled", desc, True, _bundled_factory(name)), overwrite=True)
        BACKBONES.register(BackboneSpec(AUTOATTACK_RESNET18, "package", model_card()["description"], True,
                                        create_autoattack_resnet18), overwrite=True)
        for m, desc in TIMM_EXAMPLES.items():
            BACKBONES.register(BackboneSpec(f"{TIMM_PREFIX}{m}", "timm", desc, False, _timm_factory(m)),
                               overwrite=True)
        _BUILT = True


def _available(entry: BackboneSpec) -> bool:
    return entry.kind != "package" or package_available()


def _current(entry: BackboneSpec) -> BackboneSpec:
    """The entry with ``offline`` looked up now (timm: pretrained weights in the local cache)."""
    if entry.kind != "timm":
        return entry
    model = entry.name[len(TIMM_PREFIX):]
    return dataclasses.replace(entry, offline=timm_weights_available_offline(model, hub_only=model in TIMM_EXAMPLES))


def _ordered() -> list[BackboneSpec]:
    _build()
    entries = [e for e in BACKBONES.entries().values() if _available(e)]
    return sorted(entries, key=lambda e: _KIND_ORDER.get(e.kind, 2))  # stable: registration order within a kind


def register_backbone(name: str, factory: Callable[[], nn.Module], *, description: str = "",
                      offline: bool = True, overwrite: bool = False) -> BackboneSpec:
    """Register a user backbone factory under ``name`` (the factory returns an nn.Module that maps images in
    [0, 1] to features). ValueError if the name is taken (unless ``overwrite=True``) or starts with 'timm:'."""
    _build()
    if not callable(factory):
        raise ValueError(f"factory for backbone {name!r} must be a callable returning an nn.Module, "
                         f"got {type(factory).__name__}")
    if isinstance(name, str) and name.startswith((TIMM_PREFIX, TORCHVISION_PREFIX)):
        raise ValueError(f"backbone name {name!r} starts with {name.split(':')[0] + ':'!r}, which names timm or "
                         f"torchvision models; pick another name")
    if isinstance(name, str) and name in BACKBONES and BACKBONES.info(name).kind != "custom":
        raise ValueError(f"{name!r} is a {BACKBONES.info(name).kind} backbone of rtcore; pick another name")

    def make(*, weights: str | os.PathLike[str] | None = None, pretrained: bool = True,
             cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True) -> Backbone:
        if not pretrained:
            raise ValueError(f"backbone {name!r} is a registered factory with no pretrained/random choice; "
                             f"pretrained=False (--no-pretrained) applies to bundled and timm backbones only")
        net = factory()
        if weights is not None:
            load_state_dict_into(net, load_safetensors(weights), str(weights))
        return as_backbone(net, name=name if weights is None else f"{name}+{Path(weights).name}")

    return BACKBONES.register(BackboneSpec(name, "custom", description or name, offline, make), overwrite=overwrite)


def unregister_backbone(name: str) -> None:
    """Remove a user-registered backbone (no error if absent; built-in entries stay)."""
    _build()
    if name in BACKBONES and BACKBONES.info(name).kind == "custom":
        BACKBONES.unregister(name)


def list_backbones(offline_only: bool = False, kind: str | None = None) -> list[str]:
    """Registry names: bundled, from installed packages, user-registered, then the timm examples; any
    ``"timm:<model>"`` name also works in :func:`create_backbone`.

    ``offline_only``: only entries that can be created with no network (bundled, registered, and timm
    names whose pretrained weights are already in the local cache); ``kind``: only entries of that kind
    (``bundled``, ``package``, ``custom``, ``timm``)."""
    entries = [e for e in _ordered() if kind is None or e.kind == kind]
    if offline_only:
        entries = [e for e in entries if _current(e).offline]
    return [e.name for e in entries]


#: the model-card fields :func:`card_table` shows, in order
CARD_FIELDS = ("method", "train_norm", "train_eps", "upstream_clean_acc", "upstream_robust_acc", "upstream_eval_eps",
               "upstream_eval_norm", "description")


def card_table(names: Sequence[str]) -> pd.DataFrame:
    """One row per backbone: ``backbone`` and the :data:`CARD_FIELDS` of its model card (None where it has no
    value; a backbone without a card has its registry description only)."""
    rows = []
    for name in names:
        try:
            card = read_card(name) if (BUNDLED_DIR / f"{name}.json").is_file() else {}
        except BackboneUnavailableError:
            card = {}
        row = {"backbone": name, **{k: card.get(k) for k in CARD_FIELDS}}
        try:
            row["description"] = row["description"] or backbone_info(name).description
        except (ValueError, BackboneUnavailableError):
            pass  # a name the registry cannot describe here: no description
        rows.append(row)
    return pd.DataFrame(rows, columns=["backbone", *CARD_FIELDS])


def backbone_info(name: str) -> BackboneSpec:
    """The entry of ``name`` (``offline`` current); ``"timm:<model>"`` names outside the registry get an entry
    too. ValueError naming the valid names if unknown; BackboneUnavailableError naming the install command
    for the pyautoattack backbone when the package is missing."""
    _build()
    if isinstance(name, str) and name.startswith(TIMM_PREFIX) and name not in BACKBONES:
        model = name[len(TIMM_PREFIX):]
        return _current(BackboneSpec(name, "timm", f"timm model {model}", False, _timm_factory(model)))
    if isinstance(name, str) and name.startswith(TORCHVISION_PREFIX):
        model = torchvision_arch(name[len(TORCHVISION_PREFIX):])
        return BackboneSpec(name, "torchvision", f"torchvision model {model} (local weights)", True,
                            _torchvision_factory(model))
    if name == AUTOATTACK_RESNET18 and not package_available():
        raise BackboneUnavailableError(f"backbone {AUTOATTACK_RESNET18!r} comes from the {PACKAGE} package, which is "
                                       f"not installed; install it with `{INSTALL_HINT}`")
    if name in BACKBONES and not _available(BACKBONES.info(name)):
        raise BackboneUnavailableError(f"backbone {name!r} is not available here")
    try:
        return _current(BACKBONES.info(name))
    except ValueError:
        valid = ", ".join(e.name for e in _ordered())
        raise ValueError(f"unknown backbone {name!r}; valid names: {valid} (or 'timm:<model>' for any timm "
                         f"model, 'torchvision:<model>' for a torchvision one)") from None


def check_backbone_name(name: object) -> str:
    """``name`` if :func:`create_backbone` can create it (a registry name, ``timm:<model>`` with a model
    named, ``torchvision:<model>`` of a torchvision classification model), else ValueError naming the valid
    forms. Cheap: no weights are looked at, timm is not imported."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"backbone={name!r} must be a registry name, 'timm:<model>' or 'torchvision:<model>'")
    if name.startswith(TIMM_PREFIX):
        if not name[len(TIMM_PREFIX):].strip():
            raise ValueError(f"backbone={name!r} names no timm model; write e.g. 'timm:resnet18'")
    elif name.startswith(TORCHVISION_PREFIX):
        torchvision_arch(name[len(TORCHVISION_PREFIX):])
    elif name not in list_backbones():
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(list_backbones())} (or "
                         f"'timm:<model>' for any timm model, 'torchvision:<model>' for a torchvision one)")
    return name


def backbone_specs() -> dict[str, BackboneSpec]:
    """Every available entry by name, in :func:`list_backbones` order, ``offline`` current.

    Kept for existing callers; new code uses :func:`list_backbones` and :func:`backbone_info`."""
    return {e.name: _current(e) for e in _ordered()}


def create_backbone(
    name: str | nn.Module,
    device: str | Any | None = None,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    **timm_kwargs: Any,
) -> Backbone:
    """Create a frozen backbone by registry name, ``"timm:<model>"``, or from a module.

    ``device``: see :func:`rtcore.models.wrapper.resolve_device` (``None``: CUDA when present); it is
    checked before anything is loaded. ``weights``: a local safetensors file loaded into the architecture
    (bundled, timm, registered or given module; strict key, shape and dtype check); ``pretrained=False``:
    random weights (bundled, timm and the pyautoattack backbone). ``cache_dir``: where files derived from
    installed packages are kept (the pyautoattack backbone's converted weights go to
    ``<cache_dir>/converted``; default :func:`rtcore.config.default_cache_dir`); ``use_cache=False`` writes
    nothing (the conversion is redone in memory on every call). A combination that makes no sense raises
    ValueError: a flag is never silently ignored.
    """
    dev = resolve_device(device)
    if cache_dir is not None:
        resolve_cache_dir(cache_dir)  # CacheDirError for an empty path, before any work
    if not isinstance(use_cache, bool):
        raise ValueError(f"use_cache={use_cache!r} must be True or False")
    if weights is not None and not pretrained:
        raise ValueError("give either weights=<file> (--weights) or pretrained=False (--no-pretrained), not both")
    if timm_kwargs and not (isinstance(name, str) and name.startswith(TIMM_PREFIX)):
        raise ValueError(f"extra arguments {sorted(timm_kwargs)} apply to 'timm:<model>' backbones only")
    if isinstance(name, nn.Module):
        if not pretrained:
            raise ValueError("pretrained=False does not apply to a module you pass; initialise it yourself")
        if weights is not None:
            if isinstance(name, Backbone):
                raise ValueError("weights= cannot be loaded into an already wrapped Backbone; pass the raw module")
            load_state_dict_into(name, load_safetensors(weights), str(weights))
        bb = as_backbone(name)
    elif not isinstance(name, str):
        raise ValueError(f"backbone must be a registry name or an nn.Module, got {type(name).__name__}")
    elif name.startswith(TIMM_PREFIX):
        bb = create_timm_backbone(name[len(TIMM_PREFIX):], pretrained=pretrained, weights=weights, **timm_kwargs)
    elif name.startswith(TORCHVISION_PREFIX):
        bb = create_torchvision_backbone(torchvision_arch(name[len(TORCHVISION_PREFIX):]), pretrained=pretrained,
                                         weights=weights)
    else:
        bb = backbone_info(name).factory(weights=weights, pretrained=pretrained, cache_dir=cache_dir,
                                         use_cache=use_cache)
    return bb.to(dev)
