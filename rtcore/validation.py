"""Input checks shared by the attacks, bounds, probes and pipeline (eps and norm: :mod:`rtcore.config`).

Every check raises ``ValueError`` with a message that names the bad value and the fix.
"""

from __future__ import annotations

import torch
from torch import nn


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


MAX_SEED = 2**63 - 1


def check_count(value: object, name: str = "n") -> int:
    """A positive integer (Python or numpy int); bools, floats and strings are refused."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r} ({type(value).__name__}) must be a positive integer, e.g. {name}=200")
    if int(value) < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer, e.g. {name}=200")
    return int(value)


def check_seed(value: object) -> int:
    """A seed in [0, 2**63 - 1] (Python or numpy int)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"seed={value!r} ({type(value).__name__}) must be an integer in [0, 2**63 - 1]")
    if not 0 <= int(value) <= MAX_SEED:
        raise ValueError(f"seed={value!r} is out of range; use an integer in [0, 2**63 - 1], e.g. seed=0")
    return int(value)


def check_task_names(tasks: object) -> list[object]:
    """A task list: one name (or Task) is taken as one task, never as a sequence of letters."""
    from collections.abc import Iterable

    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable) or hasattr(tasks, "x_train"):
        tasks = [tasks]
    out = list(tasks)  # type: ignore[arg-type]
    if not out:
        raise ValueError("tasks is empty; give at least one task name (see rtcore.list_tasks())")
    for t in out:
        if not isinstance(t, str) and not hasattr(t, "x_train"):
            raise ValueError(f"task {t!r} ({type(t).__name__}) is neither a task name nor a Task")
    return out
