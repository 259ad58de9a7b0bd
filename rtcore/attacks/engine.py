"""The one projected-gradient loop every attack runs, and the step rules that plug into it.

:func:`descend` scores every iterate, keeps the best per row (:func:`keep_best`) and, for the
attacks that stop, freezes a row once its score is > 0 (a misclassification). What moves an
iterate is a :class:`StepRule`: the cosine schedule (:class:`CosineRule`, here) or APGD's
momentum and step halving (:class:`rtcore.attacks.apgd.APGDRule`). Also the device helpers
(:func:`batched`, :func:`model_device`, :func:`search_model`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from .geometry import Objective, ascent_direction, bshape, project

__all__ = ["COMPACT_EVERY", "CosineRule", "Objective", "StepRule", "batched", "descend", "keep_best",
           "model_device", "project", "search_model", "step_sizes"]

#: on an accelerator, stopped rows leave the batch every this many steps (one host sync each time)
COMPACT_EVERY = 8


class StepRule(Protocol):
    """Moves the active rows of a batch one step: ``(t, active, x_t, grad, loss, x, eps, norm) -> x_{t+1}``.

    ``active`` indexes the batch's rows (per-row state lives at those indices); the result must
    lie in the ball and in [0, 1]. One rule object serves one batch of one run.
    """

    def step(self, t: int, active: torch.Tensor, xd: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor,
             x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor: ...


def step_sizes(steps: int, step_max: float) -> list[float]:
    """Cosine schedule from step_max to step_max / 20 (fractions of eps)."""
    lo = step_max / 20
    return [lo + (step_max - lo) * 0.5 * (1 + math.cos(math.pi * t / max(steps - 1, 1))) for t in range(steps)]


class CosineRule:
    """Projected steepest ascent with a step of ``eps * step_sizes(steps, step_max)[t]``."""

    def __init__(self, steps: int, step_max: float) -> None:
        self.sizes = step_sizes(steps, step_max)

    def step(self, t: int, active: torch.Tensor, xd: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor,
             x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
        e = eps[active]
        return project(xd + bshape(e * self.sizes[t], xd) * ascent_direction(grad, norm), x[active], e, norm)


@torch.no_grad()
def keep_best(score: torch.Tensor, xa: torch.Tensor, active: torch.Tensor, best_x: torch.Tensor,
              best_score: torch.Tensor) -> None:
    """In place: where an iterate ``xa`` of the ``active`` rows scores higher, it becomes their best."""
    better = score > best_score[active]
    best_score[active] = torch.where(better, score, best_score[active])
    best_x[active] = torch.where(bshape(better, xa), xa.detach(), best_x[active])


def descend(objective: Objective, x: torch.Tensor, x_start: torch.Tensor, eps: torch.Tensor, norm: str, steps: int,
            rule: StepRule, best_x: torch.Tensor, best_score: torch.Tensor, stop_at_positive: bool) -> None:
    """One run of ``steps`` steps from ``x_start``; updates ``best_x``/``best_score`` in place where the score improves.

    Every iterate (the start and the last one included) is scored. With ``stop_at_positive`` a
    row stops once its score is > 0: on the CPU stopped rows leave the batch at once; on an
    accelerator they are frozen in place and leave it every :data:`COMPACT_EVERY` steps, so that
    the loop does not wait for the device (finding the rows to drop is a host sync). Both give
    the same best iterates.
    """
    x_adv = x_start.clone()
    active = torch.arange(x.shape[0], device=x.device)
    compact_every = 1 if x.device.type == "cpu" else COMPACT_EVERY
    for t in range(steps + 1):
        last = t == steps
        xa = x_adv[active].detach().requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            loss, score = objective(xa, active)
        keep_best(score, xa, active, best_x, best_score)
        if last:
            break
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        with torch.no_grad():
            xd = xa.detach()
            stepped = rule.step(t, active, xd, grad, loss.detach(), x, eps, norm)
            if stop_at_positive:
                stopped = score > 0
                stepped = torch.where(bshape(stopped, xd), xd, stepped)  # a broken row keeps its witness
            x_adv[active] = stepped
            if stop_at_positive and (t + 1) % compact_every == 0:
                active = active[~stopped]
                if active.numel() == 0:
                    break


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
