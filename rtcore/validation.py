"""Input checks shared by the attacks, bounds and pipeline.

Every check raises ``ValueError`` with a message that names the bad value and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("linf", "l2")


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is a supported threat model, else raise."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not supported; use one of {list(NORMS)}")
    return norm


def check_eps(eps: float | Sequence[float]) -> tuple[tuple[float, ...], bool]:
    """Validate one epsilon or a list of them.

    Returns ``(eps_values, scalar)`` where ``scalar`` says whether a single float was given.
    Epsilon is measured in [0, 1] pixel units, so it must lie in [0, 1].
    """
    scalar = isinstance(eps, (int, float)) or (isinstance(eps, torch.Tensor) and eps.ndim == 0)
    values = [float(eps)] if scalar else [float(e) for e in eps]  # type: ignore[union-attr]
    if not values:
        raise ValueError("eps is an empty list; give at least one value in [0, 1], e.g. eps=[0.03, 0.1]")
    for e in values:
        if math.isnan(e) or math.isinf(e):
            raise ValueError(f"eps={e} is not a finite number; give a value in [0, 1], e.g. 8/255 = 0.0314")
        if e < 0:
            raise ValueError(f"eps={e} is negative; the perturbation budget must be in [0, 1]")
        if e > 1:
            raise ValueError(
                f"eps={e} is above 1; eps is measured in [0, 1] pixel units "
                f"(for example 8/255 = 0.0314, not 8)"
            )
    return tuple(values), scalar


def check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Images must be a non-empty float tensor (N, C, H, W) with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of images (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); give at least one image")
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}; convert images to float in [0, 1] (e.g. x.float() / 255)")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; pass raw images in [0, 1] and put "
            f"any mean/std normalisation inside the model, so that eps is measured in pixel units"
        )
    return x


def check_labels(y: torch.Tensor, n: int, name: str = "y") -> torch.Tensor:
    """Labels must be an integer tensor of shape (n,)."""
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D tensor of class indices, got {getattr(y, 'shape', type(y))}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but there are {n} inputs; give one label per input")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {y.dtype}; labels must be integer class indices (torch.long)")
    if n and int(y.min()) < 0:
        raise ValueError(f"{name} contains negative label {int(y.min())}; labels must be in 0..K-1")
    return y.long()


def check_eval_mode(model: nn.Module, name: str = "model") -> None:
    """Robustness numbers are wrong for a model in training mode (BatchNorm statistics, dropout)."""
    bad = [n or type(model).__name__ for n, m in model.named_modules() if m.training]
    if bad:
        raise ValueError(
            f"{name} is in training mode (modules {bad[:3]}{'...' if len(bad) > 3 else ''}); "
            f"BatchNorm and dropout would change the numbers: call {name}.eval() first"
        )


def check_features(f: torch.Tensor, name: str = "features") -> torch.Tensor:
    """Features must be a finite (N, m) tensor."""
    if f.ndim != 2:
        raise ValueError(f"{name} must have shape (N, m), got {tuple(f.shape)}; the backbone must return a vector per image")
    if not torch.isfinite(f).all():
        bad = int((~torch.isfinite(f)).any(dim=1).sum())
        raise ValueError(f"{name} contain NaN or inf for {bad} of {f.shape[0]} inputs; check the backbone and its weights")
    return f
