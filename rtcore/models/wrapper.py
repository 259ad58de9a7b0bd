"""The :class:`Backbone` wrapper: a frozen feature extractor g mapping images in [0,1] to vectors.

Normalisation, resizing and channel adaptation live *inside* the wrapper, so an attack on
the wrapper measures eps in the task's [0, 1] pixel units.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_eval_mode

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


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
        if not isinstance(f, torch.Tensor) or f.ndim < 2 or f.shape[0] != x.shape[0]:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(
                f"backbone {self.name!r} returned {shape} for {x.shape[0]} images; a backbone must return one "
                f"feature vector per image, shape (N, m) (wrap a scalar output with .unsqueeze(1))"
            )
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


