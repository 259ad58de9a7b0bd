"""What one search passes around: its rows (:class:`Rows`), what a plan asks for per row (:class:`Run`,
:class:`Stage`, :class:`Probe`) and what it reads of its row (:class:`RowView`), what a plan reads off
its attack (:class:`PlanTarget`), the runs in flight as the objective sees them (:class:`Jobs`), and
the progress callback every attack takes (:data:`ProgressFn`).

Plain values with no behaviour, so that the plans (:mod:`.plans`, :mod:`.adaptive`), the loop
(:mod:`.engine`) and the base (:mod:`.base`) share them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Union

import torch
from torch import nn

if TYPE_CHECKING:
    from .settings import AttackSettings

#: ``progress(fraction done)``, fraction in [0, 1], non-decreasing
ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class Run:
    """One run of the loop on one row: what the objective needs, where it starts, how it steps.

    ``loss``: a name in the attack's :attr:`~.base.Attack.losses`. ``noise``: seeds the random
    start, with (seed, noise, point, eps). ``start``: "random" or "power" (along the local
    Jacobian, :func:`.geometry.power_start`). ``rule``: "cosine" or "apgd". ``steps``: default
    ``settings.steps``. ``target``: a class, for targeted losses. ``done``: the fraction of the
    row's plan done once this run ends (for progress reports). ``give_up``: pairs ``(k, floor)``: the
    run ends after ``k`` steps if its best score is still below ``floor`` (a point that an attack makes
    no progress on is left early: A3's discarding, Liu et al., CVPR 2022).
    """

    loss: str
    noise: int
    start: str = "random"
    rule: str = "cosine"
    steps: int | None = None
    target: int | None = None
    done: float = 1.0
    give_up: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Stage:
    """Runs in order, until the point breaks (for attacks that stop; else all of them) or, after a run,
    ``go_on(best score so far)`` is false. The loop may start a later run early where a chunk has room;
    the result is the one of running them one after another (each run's iterates depend only on its
    own start)."""

    runs: tuple[Run, ...]
    go_on: Callable[[torch.Tensor], bool] | None = None


@dataclass(frozen=True)
class Probe:
    """A measurement at the row's best iterate so far, batched over every row that asks for it with the
    same function: ``fn(attack, best_x (P, ...), labels (P,) or None) -> (P, ...)``; the plan receives its
    row's value."""

    fn: Callable[[PlanTarget, torch.Tensor, torch.Tensor | None], torch.Tensor]


#: what a plan yields: a run, a stage of runs, or a probe (whose value is sent back)
Ask = Union[Run, Stage, Probe]
#: a row's plan: a generator of asks; it resumes once the runs asked for are done
RowPlan = Iterator[Ask]


@dataclass
class Rows:
    """The rows of one search: each an (eps, point) pair with its clean input and outputs."""

    x: torch.Tensor  # (R, ...) clean inputs
    eps: torch.Tensor  # (R,)
    sample: torch.Tensor  # (R,) the point's index in the caller's inputs (seeds its starts)
    y: torch.Tensor | None  # (R,) labels, for attacks on a classifier
    clean: torch.Tensor  # (R, ...) clean outputs of the original model (features or logits)
    eps_index: torch.Tensor  # (R,) the index of the row's eps in the caller's list

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, idx: torch.Tensor) -> Rows:
        """The rows ``idx``."""
        return Rows(x=self.x[idx], eps=self.eps[idx], sample=self.sample[idx],
                    y=None if self.y is None else self.y[idx], clean=self.clean[idx], eps_index=self.eps_index[idx])


class RowView:
    """What a plan reads of its row between stages: its eps, label, clean output and best score so far
    (0-d float32 tensors, so that a plan computes in the arithmetic of the batched loop)."""

    def __init__(self, rows: Rows, best: torch.Tensor, index: int) -> None:
        self._best, self.index = best, index
        self.eps = rows.eps[index]
        self.y = None if rows.y is None else rows.y[index]
        self.clean = rows.clean[index]

    @property
    def best(self) -> torch.Tensor:
        """The best score of the row over every run done so far (the clean score before any), as it is now."""
        return self._best[self.index].clone()


@dataclass(frozen=True)
class Jobs:
    """The runs of some slots of the pool, as the objective sees them (one entry per slot)."""

    row: torch.Tensor  # (S,) index into the search's rows
    loss: torch.Tensor  # (S,) index into the attack's loss names
    target: torch.Tensor  # (S,) class for targeted losses, else -1

    def __getitem__(self, idx: torch.Tensor | slice) -> Jobs:
        return Jobs(row=self.row[idx], loss=self.loss[idx], target=self.target[idx])


class PlanTarget(Protocol):
    """What a plan reads off the end-to-end attack it schedules runs for."""

    cfg: AttackSettings
    norm: str
    n_classes: int
    search: nn.Module  # the module the iterations run on (for the plans that look at gradients)
