"""What one search passes around: its rows (:class:`Rows`), the runs a plan yields (:class:`Run`), the
best iterate so far (:class:`SearchState`), what a plan reads off its attack (:class:`PlanTarget`) and the
progress callback every attack takes (:data:`ProgressFn`).

Plain values with no behaviour, so that the plans (:mod:`.plans`, :mod:`.adaptive`) and the base
(:mod:`.base`) can share them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from .settings import AttackSettings

#: ``progress(fraction done)``, fraction in [0, 1], non-decreasing
ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class Run:
    """One pass of the loop over some rows: what the objective needs, where it starts, how it steps.

    ``loss``: a name the attack's :meth:`~.base.Attack.objective` understands. ``noise``: seeds the
    random start per row, with (seed, noise, point, eps). ``start``: "random" or "power" (along
    the local Jacobian, :func:`.geometry.power_start`).
    ``rule``: "cosine" or "apgd". ``steps``: default ``settings.steps``. ``target``: a class per
    row of the group (``-1``: the row sits this run out). ``rows``: a boolean mask of the rows
    of the group that take part (default all). ``done``: the fraction of the group's work done
    once this run ends (for progress reports).
    """

    loss: str
    noise: int
    start: str = "random"
    rule: str = "cosine"
    steps: int | None = None
    target: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    done: float = 1.0


@dataclass
class Rows:
    """The rows of one search: each an (eps, point) pair with its clean input and outputs."""

    x: torch.Tensor  # (R, ...) clean inputs
    eps: torch.Tensor  # (R,)
    sample: torch.Tensor  # (R,) the point's index in the caller's inputs (seeds its starts)
    y: torch.Tensor | None  # (R,) labels, for attacks on a classifier
    clean: torch.Tensor  # (R, ...) clean outputs of the original model (features or logits)
    eps_value: float | None = None  # the eps of every row, where the rows share one (as given, not rounded)

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class SearchState:
    """The best iterate and its score per row, updated in place after every batch of every run."""

    best_x: torch.Tensor  # (R, ...)
    best: torch.Tensor  # (R,)


class PlanTarget(Protocol):
    """What a plan reads off the end-to-end attack it schedules runs for."""

    cfg: AttackSettings
    norm: str
    n_classes: int
    search: nn.Module  # the module the iterations run on (for the plans that look at gradients)
