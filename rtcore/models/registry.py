"""The backbone registry: bundled backbones, user-registered factories, timm names.

Verbs in the timm style: :func:`list_backbones`, :func:`backbone_specs`, :func:`create_backbone`,
:func:`register_backbone`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .bundled import BUNDLED_DIR, create_bundled_backbone
from .checkpoints import load_safetensors, load_state_dict_into
from .hub import TIMM_PREFIX, create_timm_backbone, timm_weights_available_offline
from .thirdparty import AUTOATTACK_RESNET18, create_autoattack_resnet18, model_card, package_available
from .wrapper import Backbone, as_backbone, default_device


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry. ``offline`` says whether it can be created with no network."""

    name: str
    kind: str  # "bundled" | "package" | "timm" | "custom"
    description: str
    offline: bool
    factory: Callable[..., Backbone] = field(repr=False)


_REGISTRY: dict[str, BackboneSpec] = {}

# timm models listed in the registry as examples; any other timm name works as "timm:<name>".
TIMM_EXAMPLES: dict[str, str] = {
    "resnet18.a1_in1k": "ResNet-18, ImageNet-1k (needs the pretrained weights: download or local file)",
    "convnext_atto.d2_in1k": "ConvNeXt-Atto, ImageNet-1k (needs the pretrained weights)",
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k": "ViT-Tiny/16, ImageNet-21k -> 1k (needs the pretrained weights)",
}


def register_backbone(name: str, factory: Callable[[], nn.Module], *, description: str = "",
                      offline: bool = True, overwrite: bool = False) -> None:
    """Register a user backbone factory under ``name`` (the factory returns an nn.Module)."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"a backbone named {name!r} is already registered; pass overwrite=True to replace it")

    def make(weights: str | os.PathLike[str] | None = None, pretrained: bool = True) -> Backbone:
        if not pretrained:
            raise ValueError(f"backbone {name!r} is a registered factory with no pretrained/random choice; "
                             f"pretrained=False (--no-pretrained) applies to bundled and timm backbones only")
        net = factory()
        if weights is not None:
            load_state_dict_into(net, load_safetensors(weights), str(weights))
        return as_backbone(net, name=name if weights is None else f"{name}+{Path(weights).name}")

    _REGISTRY[name] = BackboneSpec(name, "custom", description or name, offline, make)


def _bundled_specs() -> dict[str, BackboneSpec]:
    specs = {}
    for card_path in sorted(BUNDLED_DIR.glob("*.json")):
        name = card_path.stem
        try:
            desc = json.loads(card_path.read_text()).get("description", name)
        except (OSError, json.JSONDecodeError):
            desc = f"{name} (unreadable model card)"
        specs[name] = BackboneSpec(name, "bundled", desc, True,
                                   lambda n=name, **kw: create_bundled_backbone(n, **kw))
    return specs


def _timm_spec(model_name: str) -> BackboneSpec:
    desc = TIMM_EXAMPLES.get(model_name, f"timm model {model_name}")
    offline = timm_weights_available_offline(model_name, hub_only=model_name in TIMM_EXAMPLES)
    return BackboneSpec(f"{TIMM_PREFIX}{model_name}", "timm", desc, offline,
                        lambda **kw: create_timm_backbone(model_name, **kw))


def backbone_specs() -> dict[str, BackboneSpec]:
    """All registry entries: bundled, from installed packages, user-registered, then the timm examples.

    ``autoattack-resnet18-cifar10`` is listed only when pyautoattack is installed."""
    specs = _bundled_specs()
    if package_available():
        specs[AUTOATTACK_RESNET18] = BackboneSpec(AUTOATTACK_RESNET18, "package", model_card()["description"], True,
                                                  create_autoattack_resnet18)
    specs.update(_REGISTRY)
    for m in TIMM_EXAMPLES:
        specs[f"{TIMM_PREFIX}{m}"] = _timm_spec(m)
    return specs


def list_backbones(offline_only: bool = False) -> list[str]:
    """Registry names; any ``"timm:<model>"`` name also works in :func:`create_backbone`.

    ``offline_only``: only entries that can be created with no network (bundled, registered,
    and timm names whose pretrained weights are already in the local cache)."""
    return [n for n, s in backbone_specs().items() if s.offline or not offline_only]


def create_backbone(
    name: str | nn.Module,
    device: str | torch.device | None = None,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    **timm_kwargs: Any,
) -> Backbone:
    """Create a frozen backbone by registry name, ``"timm:<model>"``, or from a module.

    ``device=None`` picks CUDA when present. ``weights`` is a local safetensors file loaded
    into the architecture (bundled, timm, registered or given module; strict key and shape
    check); ``pretrained=False`` gives random weights (bundled and timm). A combination that
    makes no sense raises ValueError: a flag is never silently ignored.
    """
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
    else:
        specs = backbone_specs()
        if name == AUTOATTACK_RESNET18 and name not in specs:
            return create_autoattack_resnet18(weights=weights, pretrained=pretrained)  # raises, naming the fix
        if name not in specs:
            raise ValueError(
                f"unknown backbone {name!r}; valid names: {sorted(specs)} "
                f"(or 'timm:<model>' for any timm model)"
            )
        bb = specs[name].factory(weights=weights, pretrained=pretrained)
    return bb.to(torch.device(device) if device is not None else default_device())
