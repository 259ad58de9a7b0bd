"""The :class:`Backbone` wrapper: a frozen feature extractor g mapping images in [0,1] to vectors.

Normalisation, resizing (bilinear or bicubic, optionally a timm/torchvision-style centre crop) and
channel adaptation live *inside* the wrapper, so an attack on the wrapper measures eps in the task's
[0, 1] pixel units.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..numerics import by_rows
from ..validation import check_eval_mode
from .identity import callable_identity, module_identity

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]

#: the dtype every backbone computes in (images are float32 in [0, 1])
BACKBONE_DTYPE = torch.float32
#: how images of another size are resized to the network's input size (torch.nn.functional.interpolate modes)
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")


def check_preprocessing(interpolation: str, crop_pct: float | None, antialias: bool) -> None:
    """ValueError naming the value and the valid ones for a resize rule the wrapper cannot apply."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r} is not one of {list(INTERPOLATIONS)}")
    if crop_pct is not None and (isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float))
                                 or not 0 < crop_pct <= 1):
        raise ValueError(f"crop_pct={crop_pct!r} must be a fraction in (0, 1] (timm's 0.875: resize to size/0.875, "
                         f"then crop the centre), or None to resize straight to the input size")
    if not isinstance(antialias, bool):
        raise ValueError(f"antialias={antialias!r} must be True or False")


def available_devices() -> list[str]:
    """The devices torch can compute on here: ``cpu``, each ``cuda:<i>``, ``mps`` when present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: str | torch.device) -> str:
    """``cuda (NVIDIA H100)`` or ``cpu (2 threads)``: the device and what it is."""
    d = torch.device(device)
    if d.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(d)})"
    threads = torch.get_num_threads()
    return f"{d.type} ({threads} thread{'' if threads == 1 else 's'})"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a backbone runs on: ``None`` is :func:`default_device`; anything else must be a device
    torch can compute on here (``"meta"``, a CUDA device without a GPU, an index past the last GPU, or a
    name torch does not know are refused with ValueError naming the available devices)."""
    if device is None:
        return default_device()
    here = available_devices()
    if isinstance(device, bool) or not isinstance(device, (str, torch.device)):
        raise ValueError(f"device={device!r} ({type(device).__name__}) must be a device name such as 'cpu' or "
                         f"'cuda:0', a torch.device, or None for the default; available here: {here}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"device={device!r} is not a device name ({str(e).splitlines()[0]}); "
                         f"available here: {here}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "meta":
        raise ValueError(f"device={device!r}: meta tensors hold shapes but no numbers, and a backbone must compute "
                         f"features; use one of {here}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); available here: {here}; pass "
                             f"device='cpu' or leave it out (CUDA when present, else CPU)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                             f"available here: {here}")
        return dev
    if dev.type == "mps" and "mps" in here:
        return dev
    raise ValueError(f"device={device!r} ({dev.type}) is not available for backbones here; available: {here}")


def check_network(net: nn.Module, name: str) -> None:
    """The rules every wrapped network meets: float32 parameters and floating buffers (ValueError naming
    the dtype and the fix, ``module.float()``), no NaN in any of them and no inf in a parameter."""
    bad_dtype: dict[torch.dtype, list[str]] = {}
    tensors = [(n, t, True) for n, t in net.named_parameters()] + [(n, t, False) for n, t in net.named_buffers()]
    for n, t, _ in tensors:
        if (t.is_floating_point() or t.is_complex()) and t.dtype != BACKBONE_DTYPE:
            bad_dtype.setdefault(t.dtype, []).append(n)
    if bad_dtype:
        dtype, names = next(iter(bad_dtype.items()))
        raise ValueError(f"backbone {name!r} has {dtype} weights ({_few(names)}); rtcore computes in float32 "
                         f"(images are float32 in [0, 1], eps in pixel units) and does not convert a model behind "
                         f"your back: convert it first with module.float() (or module.to(torch.float32))")
    for n, t, is_param in tensors:
        if not t.is_floating_point() or t.device.type == "meta":
            continue
        if bool(torch.isnan(t).any()):
            raise ValueError(f"backbone {name!r} has NaN in {'parameter' if is_param else 'buffer'} {n!r}; "
                             f"the weights are corrupt or their training diverged: load other weights")
        if is_param and bool(torch.isinf(t).any()):
            raise ValueError(f"backbone {name!r} has inf in parameter {n!r}; the weights are corrupt or their "
                             f"training diverged: load other weights")


def _few(names: Sequence[str], k: int = 3) -> str:
    return ", ".join(repr(n) for n in names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


@dataclass(frozen=True)
class FeatureInfo:
    """What a backbone returns for images of one shape: ``dim`` = m of the (N, m) features, and their dtype."""

    dim: int
    dtype: torch.dtype


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
    inputs of another size are resized with ``interpolation`` (``antialias``: as PIL does when
    shrinking). ``crop_pct=None`` resizes straight to (H, W); a fraction resizes as timm's and
    torchvision's eval transforms do: the shorter side to ``floor(H / crop_pct)`` keeping the aspect
    ratio (both sides to ``floor(side / crop_pct)`` for a non-square input size), then crops the centre
    (H, W). Then ``(x - mean) / std`` is applied.
    The wrapper is put in eval mode with frozen parameters, and every call checks it. The network
    must hold float32, finite weights (:func:`check_network`); floating inputs are computed in float32.
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
        interpolation: str = "bilinear",
        crop_pct: float | None = None,
        antialias: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"backbone {name!r}: net must be a torch.nn.Module, got {type(net).__name__}")
        check_network(net, name)
        check_preprocessing(interpolation, crop_pct, antialias)
        self.net = net
        self.name = name
        self.interpolation, self.crop_pct, self.antialias = interpolation, crop_pct, antialias
        self.input_size = tuple(int(s) for s in input_size) if input_size is not None else None
        chans = self.input_size[0] if self.input_size else (len(mean) if mean is not None else 1)
        mean_t = torch.tensor(list(mean) if mean is not None else [0.0] * chans, dtype=torch.float32)
        std_t = torch.tensor(list(std) if std is not None else [1.0] * chans, dtype=torch.float32)
        if not bool(torch.isfinite(mean_t).all()) or not bool(torch.isfinite(std_t).all()) or (std_t <= 0).any():
            raise ValueError(f"mean={mean_t.tolist()} and std={std_t.tolist()} must be finite with std > 0")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)
        self._features = features
        self.card = dict(card or {})
        self.source = source
        self._info: dict[tuple[str, tuple[int, ...]], FeatureInfo] = {}  # feature_info memo (dict ops are atomic)
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
            x = self._resize(x, h, w)
        return (x - self.mean) / self.std

    def _resize(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Images at (h, w): resized straight, or (``crop_pct``) resized then centre-cropped (see the class)."""
        if self.crop_pct is None:
            size = (h, w)
        elif h == w:  # the shorter side to the scale size, the aspect ratio kept (torchvision's Resize(int))
            scale = math.floor(h / self.crop_pct + 1e-6)
            in_h, in_w = x.shape[-2:]
            short, long = min(in_h, in_w), max(in_h, in_w)
            other = int(scale * long / short)
            size = (scale, other) if in_h <= in_w else (other, scale)
        else:
            size = (math.floor(h / self.crop_pct + 1e-6), math.floor(w / self.crop_pct + 1e-6))
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=self.antialias)
        if size == (h, w):
            return x
        top, left = int(round((size[0] - h) / 2.0)), int(round((size[1] - w) / 2.0))
        return x[..., top:top + h, left:left + w]

    def with_preprocessing(self, *, input_size: Sequence[int] | None = None, mean: Sequence[float] | None = None,
                           std: Sequence[float] | None = None, normalize: bool = True,
                           interpolation: str | None = None, crop_pct: float | None = None,
                           antialias: bool | None = None, features: FeatureFn | None = None) -> Backbone:
        """A backbone over the same frozen network with some preprocessing (or the feature function) changed;
        None keeps the current value. ``input_size``: (H, W), the channels stay; ``normalize=False``: no
        mean/std at all (for a network that normalises its input itself)."""
        if not normalize and (mean is not None or std is not None):
            raise ValueError("normalize=False takes no mean or std; give either normalize=False or mean/std")
        chans = self.input_size[0] if self.input_size else int(self.mean.numel())
        size = self.input_size if input_size is None else (chans, *(int(s) for s in input_size))
        if normalize:
            mean = self.mean.flatten().tolist() if mean is None else mean
            std = self.std.flatten().tolist() if std is None else std
        g = Backbone(self.net, name=self.name, input_size=size, mean=mean, std=std,
                     features=self._features if features is None else features, card=self.card, source=self.source,
                     interpolation=self.interpolation if interpolation is None else interpolation,
                     crop_pct=self.crop_pct if crop_pct is None else crop_pct,
                     antialias=self.antialias if antialias is None else antialias)
        return g.to(self.device)

    def _check_call(self, x: object) -> torch.Tensor:
        """Eval mode, frozen float32 weights and floating images (N, C, H, W), on every call."""
        check_eval_mode(self, f"backbone {self.name!r}")
        for n, p in self.named_parameters():
            if p.requires_grad:
                raise RuntimeError(f"backbone {self.name!r} has trainable parameters ({n!r}); it must stay frozen")
            if p.dtype != BACKBONE_DTYPE:
                raise ValueError(f"backbone {self.name!r} was converted to {p.dtype} after wrapping (parameter "
                                 f"{n!r}); it computes in float32: call .float() on it")
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"backbone {self.name!r} takes images of shape (N, C, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"backbone {self.name!r} got images of dtype {x.dtype}; give float images in [0, 1] "
                             f"(e.g. x.float() / 255 for uint8 pixels)")
        return x if x.dtype == BACKBONE_DTYPE else x.to(BACKBONE_DTYPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, m) of images in [0, 1], computed on fixed-size chunks of rows
        (:func:`rtcore.numerics.by_rows`: an image's features never depend on its batch)."""
        return by_rows(self._rows, self._check_call(x))

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        f = self._features(self.net, self.preprocess(x))
        if not isinstance(f, torch.Tensor) or f.ndim < 2 or f.shape[0] != x.shape[0]:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(
                f"backbone {self.name!r} returned {shape} for a chunk of {x.shape[0]} images; a backbone must return one "
                f"feature vector per image, shape (N, m) (wrap a scalar output with .unsqueeze(1))"
            )
        return f.flatten(1)

    def fingerprint(self) -> str:
        """sha256 of what g computes: the cache key of everything computed from it.

        Covers the wrapped network's code, plain attributes, hooks, weights and buffers
        (:func:`rtcore.models.identity.module_identity`), the feature function (its code and source)
        and the preprocessing (input size, mean, std, and the resize rule when it is not the plain bilinear
        one, so fingerprints of earlier backbones are unchanged). Recomputed on every call (cheap: tensor bytes are
        digested once per tensor version), so a change made after wrapping is seen.
        """
        h = hashlib.sha256(b"rtcore-backbone-v2\0")
        h.update(repr((self.input_size, self.mean.flatten().tolist(), self.std.flatten().tolist())).encode())
        if (self.interpolation, self.crop_pct, self.antialias) != ("bilinear", None, False):  # v2 keys stay valid
            h.update(repr((self.interpolation, self.crop_pct, self.antialias)).encode())
        h.update(callable_identity(self._features).encode())
        h.update(module_identity(self.net).encode())
        return h.hexdigest()

    def feature_info(self, input_shape: Sequence[int]) -> FeatureInfo:
        """m and dtype of the features of images of shape ``(C, H, W)``: one forward pass on two seeded
        images in [0, 1], memoised per shape and :meth:`fingerprint`.

        Raises ValueError if the output is not one vector per image, not floating or not finite (the message
        names the backbone). Use it to check that a stored result, shape (N, m), fits the current model.
        """
        shape = _check_input_shape(input_shape)
        key = (self.fingerprint(), shape)
        hit = self._info.get(key)
        if hit is not None:
            return hit
        x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0)).to(self.device)
        with torch.no_grad():
            f = self(x)
        if not f.is_floating_point():
            raise ValueError(f"backbone {self.name!r} returned features of dtype {f.dtype}; features must be floats "
                             f"(return a float tensor from forward)")
        if not bool(torch.isfinite(f).all()):
            raise ValueError(f"backbone {self.name!r} returned NaN or inf features for seeded images of shape "
                             f"{shape} in [0, 1]; check its forward and weights")
        info = FeatureInfo(int(f.shape[1]), f.dtype)
        self._info[key] = info
        return info

    def feature_dim(self, input_shape: Sequence[int]) -> int:
        """m, the length of the feature vector of an image of shape ``(C, H, W)`` (see :meth:`feature_info`)."""
        return self.feature_info(input_shape).dim


def _check_input_shape(input_shape: object) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)  # type: ignore[arg-type]
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"input_shape={input_shape!r} must be the (C, H, W) of one image, three positive ints, "
                         f"e.g. (1, 28, 28)")
    return shape


def module_fingerprint(module: nn.Module) -> str:
    """sha256 of what a module computes (:func:`rtcore.models.identity.module_identity`)."""
    return module_identity(module)


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


