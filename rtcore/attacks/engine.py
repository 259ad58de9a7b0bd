"""The step rules and device helpers of the loop every attack runs (:mod:`.pool`).

A step rule moves an iterate: the cosine schedule (:func:`cosine_step`, here) or APGD's momentum and
step halving (:class:`.apgd.APGDState`). The device helpers: :func:`batched` (a function over rows
without a graph), :func:`model_device`, :func:`search_model` (the verified fused copy the iterations
run on).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .geometry import Objective, ascent_direction, bshape, project

__all__ = ["Objective", "batched", "cosine_step", "model_device", "project", "search_model", "step_sizes"]


def step_sizes(steps: int, step_max: float) -> list[float]:
    """Cosine schedule from step_max to step_max / 20 (fractions of eps)."""
    lo = step_max / 20
    return [lo + (step_max - lo) * 0.5 * (1 + math.cos(math.pi * t / max(steps - 1, 1))) for t in range(steps)]


def cosine_step(xd: torch.Tensor, grad: torch.Tensor, size: torch.Tensor, x: torch.Tensor, eps: torch.Tensor,
                norm: str) -> torch.Tensor:
    """Projected steepest ascent with a step of ``eps * size`` per row (``size``: :func:`step_sizes` at its step)."""
    return project(xd + bshape(eps * size, xd) * ascent_direction(grad, norm), x, eps, norm)


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``fn`` over ``x`` in batches of ``batch_size`` rows, without a graph."""
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def model_device(model: nn.Module, x: torch.Tensor) -> torch.device:
    """The device of the model's first parameter or buffer (x's device for a parameter-free model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return x.device


def search_model(model: nn.Module, x: torch.Tensor, fuse: bool) -> nn.Module:
    """The module the iterations run on: a verified fused copy of ``model`` when ``fuse``
    (:func:`rtcore.models.fused.fused_copy`), else ``model`` itself. Only for searching:
    reported numbers are always recomputed on ``model``."""
    if not fuse:
        return model
    from ..models.fused import fused_copy

    twin, _ = fused_copy(model, x)
    return twin
