"""Backbone registry: frozen feature extractors g mapping images in [0,1] to feature vectors.

Three kinds, one wrapper (:class:`Backbone`):

* bundled backbones from ``assets/backbones`` (safetensors + JSON model card, hash-checked);
* timm models by name, ``"timm:<model>"`` (pretrained weights from the Hugging Face cache or
  a local safetensors file; ``pretrained=False`` works offline);
* any ``torch.nn.Module`` a user passes (:func:`as_backbone`).

Normalisation, resizing and channel adaptation live *inside* the wrapper, so an attack on
the wrapper measures eps in the task's [0, 1] pixel units.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .nets import ARCHS
from .validation import check_eval_mode

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
BUNDLED_DIR = ASSETS_DIR / "backbones"
TIMM_PREFIX = "timm:"
MAX_CHECKPOINT_BYTES = 2 * 1024**3

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class BackboneUnavailableError(RuntimeError):
    """Weights that are needed are not on this machine and cannot be downloaded."""


class CheckpointError(ValueError):
    """A checkpoint file is not safetensors, is corrupt, or does not fit the architecture."""


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _call_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x)


def _forward_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.forward_features(x)  # type: ignore[operator]


def _timm_pre_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.forward_head(net.forward_features(x), pre_logits=True)  # type: ignore[operator]


class Backbone(nn.Module):
    """Frozen representation g: (N, C, H, W) images in [0, 1] -> (N, m) features.

    ``input_size=(C, H, W)`` is what the wrapped network expects: grayscale inputs are
    repeated to RGB, RGB inputs are converted to luminance for a 1-channel network, and
    inputs of another size are resized bilinearly. Then ``(x - mean) / std`` is applied.
    The wrapper is put in eval mode with frozen parameters, and every call checks it.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str,
        input_size: Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        features: FeatureFn = _call_forward,
        card: dict[str, Any] | None = None,
        source: str = "",
    ) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.input_size = tuple(int(s) for s in input_size) if input_size is not None else None
        chans = self.input_size[0] if self.input_size else (len(mean) if mean is not None else 1)
        mean_t = torch.tensor(list(mean) if mean is not None else [0.0] * chans, dtype=torch.float32)
        std_t = torch.tensor(list(std) if std is not None else [1.0] * chans, dtype=torch.float32)
        if (std_t <= 0).any():
            raise ValueError(f"std={list(std_t.tolist())} must be positive")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)
        self._features = features
        self.card = dict(card or {})
        self.source = source
        self._fingerprint: str | None = None
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        if mode:
            raise RuntimeError(
                f"backbone {self.name!r} is frozen and stays in eval mode; train the wrapped "
                f"network before wrapping it (see rtcore.train)"
            )
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Channel adaptation, resizing and normalisation (all differentiable)."""
        if self.input_size is not None:
            c, h, w = self.input_size
            if x.shape[1] != c:
                if x.shape[1] == 1:
                    x = x.expand(-1, c, -1, -1)
                elif x.shape[1] == 3 and c == 1:
                    lum = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
                    x = (x * lum.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
                else:
                    raise ValueError(
                        f"backbone {self.name!r} takes {c}-channel images; got {x.shape[1]} channels "
                        f"and no rule to convert them (1->{c} and 3->1 are supported)"
                    )
            if tuple(x.shape[-2:]) != (h, w):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_eval_mode(self, f"backbone {self.name!r}")
        if any(p.requires_grad for p in self.parameters()):
            raise RuntimeError(f"backbone {self.name!r} has trainable parameters; it must stay frozen")
        f = self._features(self.net, self.preprocess(x))
        return f.flatten(1)

    def fingerprint(self) -> str:
        """sha256 over weights and preprocessing: the cache key of everything computed from g."""
        if self._fingerprint is None:
            h = hashlib.sha256(type(self.net).__qualname__.encode())
            h.update(repr((self.input_size, self.mean.flatten().tolist(), self.std.flatten().tolist())).encode())
            h.update(getattr(self._features, "__name__", "features").encode())
            h.update(module_fingerprint(self.net).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def module_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's class and state dict (names, dtypes, shapes and values)."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for key, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def as_backbone(
    module: nn.Module,
    *,
    name: str | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    features: FeatureFn = _call_forward,
) -> Backbone:
    """Wrap a user module (images in [0,1] -> features) as a frozen :class:`Backbone`.

    The module is put in eval mode and frozen (it is owned by the wrapper from now on).
    """
    if isinstance(module, Backbone):
        return module
    if not isinstance(module, nn.Module):
        raise ValueError(f"backbone must be a torch.nn.Module or a registry name, got {type(module).__name__}")
    return Backbone(module, name=name or type(module).__name__, input_size=input_size, mean=mean, std=std,
                    features=features, source="user module")


# ---------------------------------------------------------------- checkpoints

def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_safetensors_file(path: str | os.PathLike[str]) -> Path:
    """Refuse anything that is not a readable safetensors file (never unpickle)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist; give the path of a .safetensors file")
    size = p.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"checkpoint {str(p)!r} is {size / 1e9:.1f} GB, above the 2 GB limit")
    with open(p, "rb") as fh:
        head = fh.read(9)
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if len(head) < 9 or head[8:9] != b"{" or n <= 0 or n > size - 8:
        raise CheckpointError(
            f"checkpoint {str(p)!r} is not a safetensors file (pickled .pt/.pth/.bin files are refused "
            f"because unpickling can run code); convert it once where you trust it: "
            f"safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')"
        )
    return p


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a state dict from a safetensors file with a clear error when it is not one."""
    from safetensors import SafetensorError  # type: ignore[attr-defined]
    from safetensors.torch import load_file

    p = check_safetensors_file(path)
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(p)!r} is not a valid safetensors file: {e}") from e


def load_state_dict_into(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load; a mismatch becomes a CheckpointError that lists the differing keys."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = str(e).split("\n")
        detail = " ".join(line.strip() for line in msg[:4])[:600]
        raise CheckpointError(
            f"checkpoint {source!r} does not match the architecture {type(net).__name__}: {detail}. "
            f"Pick the architecture the checkpoint was saved from."
        ) from e


# ---------------------------------------------------------------- timm

def _timm_hf_file(model_name: str) -> str:
    """Where timm would look for the pretrained weights, for error messages."""
    try:
        import timm

        cfg = timm.models.get_pretrained_cfg(model_name)
        hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if hub:
            return f"'model.safetensors' of the Hugging Face repo '{hub}'"
        url = getattr(cfg, "url", None) if cfg is not None else None
        if url:
            return f"the file {url}"
    except Exception:  # noqa: BLE001 - only used to improve a message
        pass
    return f"the pretrained weights of '{model_name}'"


def create_timm_backbone(
    model_name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
    card: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> Backbone:
    """A timm model as a backbone: features are ``forward_head(forward_features(x), pre_logits=True)``.

    ``weights`` is a local safetensors file loaded through timm's own pretrained path
    (``pretrained_cfg_overlay=dict(file=...)``); without it, ``pretrained=True`` uses the
    Hugging Face cache or downloads. Mean, std and input size come from timm's data config
    unless given.
    """
    import timm
    from timm.data import resolve_model_data_config

    if not timm.is_model(model_name.split(".")[0]) and not timm.is_model(model_name):
        raise ValueError(
            f"timm has no model {model_name!r}; see timm.list_models() for names (e.g. 'resnet18.a1_in1k')"
        )
    if weights is not None:
        path = check_safetensors_file(weights)
        overlay = {"file": str(path)}
        if "num_classes" in model_kwargs:
            overlay["num_classes"] = model_kwargs["num_classes"]
        try:
            net = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **model_kwargs)
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not match timm model {model_name!r} with {model_kwargs}: "
                f"{str(e).splitlines()[0][:500]}"
            ) from e
        source = f"timm {model_name} with weights {path}"
    elif pretrained:
        try:
            net = timm.create_model(model_name, pretrained=True, **model_kwargs)
        except Exception as e:  # noqa: BLE001 - any hub/network failure becomes one clear message
            raise BackboneUnavailableError(
                f"pretrained weights for timm model {model_name!r} are not available: timm needs "
                f"{_timm_hf_file(model_name)} and could not find it in the local cache "
                f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}) or download it "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}). "
                f"Fix: run once with network to fill the cache, or download the file elsewhere and pass "
                f"weights='/path/model.safetensors' (CLI: --weights), or use pretrained=False for random weights."
            ) from e
        source = f"timm {model_name} (pretrained)"
    else:
        net = timm.create_model(model_name, pretrained=False, **model_kwargs)
        source = f"timm {model_name} (random init)"
    cfg = resolve_model_data_config(net)
    return Backbone(
        net,
        name=name or f"{TIMM_PREFIX}{model_name}",
        input_size=input_size or cfg["input_size"],
        mean=mean or cfg["mean"],
        std=std or cfg["std"],
        features=_timm_pre_logits,
        card=card,
        source=source,
    )


# ---------------------------------------------------------------- bundled

def read_card(name: str) -> dict[str, Any]:
    """The JSON model card of a bundled backbone."""
    path = BUNDLED_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BackboneUnavailableError(f"model card {str(path)!r} of bundled backbone {name!r} is unreadable: {e}") from e


def create_bundled_backbone(name: str) -> Backbone:
    """Load a bundled backbone; its weights file must match the sha256 in its card."""
    card = read_card(name)
    path = BUNDLED_DIR / card["weights"]
    if not path.is_file():
        raise BackboneUnavailableError(
            f"weights file {str(path)!r} of bundled backbone {name!r} is missing; restore assets/ from "
            f"the repository or retrain it with `python -m rtcore.train {card.get('recipe', name)}`"
        )
    digest = file_sha256(path)
    if digest != card["sha256"]:
        raise CheckpointError(
            f"weights file {str(path)!r} has sha256 {digest[:16]}..., but the model card says "
            f"{card['sha256'][:16]}...; the file was changed or corrupted: restore it from the repository"
        )
    arch: str = card["arch"]
    kwargs = dict(card.get("arch_kwargs", {}))
    if arch.startswith(TIMM_PREFIX):
        return create_timm_backbone(
            arch[len(TIMM_PREFIX):], weights=path, input_size=card["input_size"], mean=card["mean"],
            std=card["std"], name=name, card=card, **kwargs,
        )
    if arch not in ARCHS:
        raise CheckpointError(f"bundled backbone {name!r} names unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    net = ARCHS[arch](**kwargs)
    load_state_dict_into(net, load_safetensors(path), str(path))
    return Backbone(net, name=name, input_size=card["input_size"], mean=card["mean"], std=card["std"],
                    features=_forward_features, card=card, source=f"bundled {path.name}")


# ---------------------------------------------------------------- registry

@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry. ``offline`` says whether it can be created with no network."""

    name: str
    kind: str  # "bundled" | "timm" | "custom"
    description: str
    offline: bool
    factory: Callable[[], Backbone] = field(repr=False)


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

    def make() -> Backbone:
        return as_backbone(factory(), name=name)

    _REGISTRY[name] = BackboneSpec(name, "custom", description or name, offline, make)


def _bundled_specs() -> dict[str, BackboneSpec]:
    specs = {}
    for card_path in sorted(BUNDLED_DIR.glob("*.json")):
        name = card_path.stem
        try:
            desc = json.loads(card_path.read_text()).get("description", name)
        except (OSError, json.JSONDecodeError):
            desc = f"{name} (unreadable model card)"
        specs[name] = BackboneSpec(name, "bundled", desc, True, lambda n=name: create_bundled_backbone(n))
    return specs


def _timm_spec(model_name: str) -> BackboneSpec:
    desc = TIMM_EXAMPLES.get(model_name, f"timm model {model_name}")
    return BackboneSpec(f"{TIMM_PREFIX}{model_name}", "timm", desc, False,
                        lambda: create_timm_backbone(model_name))


def backbone_specs() -> dict[str, BackboneSpec]:
    """All registry entries: bundled, user-registered, then the timm examples."""
    specs = _bundled_specs()
    specs.update(_REGISTRY)
    for m in TIMM_EXAMPLES:
        specs[f"{TIMM_PREFIX}{m}"] = _timm_spec(m)
    return specs


def list_backbones(offline_only: bool = False) -> list[str]:
    """Registry names; any ``"timm:<model>"`` name also works in :func:`create_backbone`."""
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

    ``device=None`` picks CUDA when present. ``weights`` (timm only) is a local safetensors file.
    """
    if isinstance(name, nn.Module):
        bb = as_backbone(name)
    elif not isinstance(name, str):
        raise ValueError(f"backbone must be a registry name or an nn.Module, got {type(name).__name__}")
    elif name.startswith(TIMM_PREFIX):
        bb = create_timm_backbone(name[len(TIMM_PREFIX):], pretrained=pretrained, weights=weights, **timm_kwargs)
    else:
        specs = backbone_specs()
        if name not in specs:
            raise ValueError(
                f"unknown backbone {name!r}; valid names: {sorted(specs)} "
                f"(or 'timm:<model>' for any timm model)"
            )
        bb = specs[name].factory()
    return bb.to(torch.device(device) if device is not None else default_device())
