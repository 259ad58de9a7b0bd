"""The attack base: everything but the loss and the step rule, in one place.

An :class:`Attack` takes checked inputs and a list of eps and does, for every attack alike:

* device and dtype (the model's device, float32), the clean outputs on the original model and
  the module the iterations run on (a verified fused copy, :func:`.engine.search_model`);
* eps expansion: one row per (eps, point), each with its own eps, so several eps share a call;
* the search: every row's runs, as its :meth:`Attack.plan` asks for them, from seeded random (or
  power) starts, in the one loop (:class:`.pool.Pool`) with each run's step rule, keeping the best
  iterate per row and, for attacks that :attr:`Attack.stops`, stopping a row once it breaks;
* witness carry-over: for attacks that stop, a point's row at an eps waits for its row at the next
  smaller eps (running early only in a chunk's spare room), and a point broken at a smaller eps is
  not attacked further: its witness lies in every larger ball; for all, a smaller eps's witness
  replaces a worse larger-eps one (results monotone in eps);
* the inside-the-ball-and-[0, 1] check of every returned point, and every reported number
  recomputed on the original model (:meth:`Attack.evaluate`).

Calling an attack (:meth:`Attack.__call__`, as foolbox's ``FixedEpsilonAttack.__call__``) checks
the inputs, takes one eps or a list of them and packages the result once for every attack: a
:class:`Result` subclass whose per-eps fields have a leading E axis for a list and none for one eps.

A subclass writes :meth:`Attack.plan` (its runs: loss, start, step rule, targets),
:meth:`Attack.objective` (its loss and the score it keeps), :meth:`Attack.evaluate` (its reported
values) and names its :attr:`Attack.result_type`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import ClassVar, Generic, TypeVar

import torch
from torch import nn

from ..config import check_eps, check_norm
from ..numerics import with_fixed_threads
from ..validation import check_eval_mode, check_images, check_labels
from .engine import batched, model_device, search_model
from .geometry import check_inside
from .pool import Pool
from .search import Jobs, ProgressFn, RowPlan, Rows, RowView
from .settings import AttackSettings, AttackSetup


@dataclass(frozen=True, kw_only=True)
class Result:
    """What every attack returns; each attack's result adds its values. ``eps``: as given (one number,
    or a tuple for a list); every per-eps field has a leading E axis only for a list."""

    eps: float | tuple[float, ...]
    norm: str
    x_adv: torch.Tensor  # ([E,] N, ...) the best witness per (eps, point): inside the ball and [0, 1]
    settings: AttackSettings


@dataclass
class Outcome:
    """What :meth:`Attack.run` returns: per eps and point the best witness and the values
    :meth:`Attack.evaluate` computed from it on the original model (leading E axis)."""

    eps: tuple[float, ...]
    x_adv: torch.Tensor  # (E, N, ...)
    values: dict[str, torch.Tensor]  # each (E, N, ...)
    clean: torch.Tensor  # (N, ...) clean outputs of the original model
    y: torch.Tensor | None  # (N,) the labels, for attacks on a classifier


R = TypeVar("R", bound=Result)


class Attack(ABC, Generic[R]):
    """The template every attack fills in (see the module docstring).

    ``model``: the module attacked (backbone or classifier, eval mode, checked on every call);
    ``cfg``: the settings; ``norm``: "linf" or "l2"; ``seed``: seeds every random start.
    """

    #: the result dataclass: its per-eps fields are filled from :meth:`evaluate`'s values of the same
    #: name, its per-point ones from :meth:`point_values`
    result_type: type[R]
    #: the names of the losses its runs ascend (a run's ``loss``; the objective gets their indices)
    losses: ClassVar[tuple[str, ...]]
    #: the model's name in error messages ("model", "backbone")
    checked_as: ClassVar[str] = "model"
    #: the attack takes labels (checked against the model's outputs)
    labelled: ClassVar[bool] = False
    #: a row is done once its score is > 0 (a misclassification): eps are attacked in increasing
    #: order, each only on points not broken at a smaller eps, and broken rows leave the loop
    stops: ClassVar[bool] = False
    #: the value that orders witnesses across eps (:meth:`better`) in :meth:`run`'s carry-over
    carry_key: ClassVar[str]

    def __init__(self, model: nn.Module, setup: AttackSetup) -> None:
        self.model, self.setup = model, setup
        self.cfg, self.norm, self.seed = setup.settings, setup.norm, int(setup.seed)
        self.search: nn.Module = model
        self.eps_values: tuple[float, ...] = ()  # of the current call (a row's eps_index points into it)

    # ------------------------------------------------------------ what a subclass writes

    def prepare(self, x: torch.Tensor, y: torch.Tensor | None, clean: torch.Tensor) -> None:
        """Called once before any search, with the inputs, labels and clean outputs (checks, references)."""

    @abstractmethod
    def clean_score(self, rows: Rows) -> torch.Tensor:
        """The score of each row's clean input: where the best iterate starts."""

    @abstractmethod
    def plan(self, row: RowView) -> RowPlan:
        """The plan of one row (:data:`.search.RowPlan`): a generator of runs, stages and probes that
        resumes once what it asked for is done, so it can read ``row.best`` to decide what comes next."""

    @abstractmethod
    def objective(self, xa: torch.Tensor, rows: Rows, jobs: Jobs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss to ascend, score to keep)`` per iterate ``xa``, each of the run ``jobs`` describes
        (its row of ``rows``, its loss in :attr:`losses`, its target)."""

    @abstractmethod
    def evaluate(self, x_adv: torch.Tensor, rows: Rows) -> dict[str, torch.Tensor]:
        """The reported values of the witnesses ``x_adv`` of ``rows``, on the original model
        (must include :attr:`carry_key`, and for attacks that stop ``"broken"``, a bool per row)."""

    @staticmethod
    def better(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Where value ``a`` (smaller eps) beats value ``b`` (larger eps); default: larger is better."""
        return a > b

    def point_values(self, out: Outcome) -> dict[str, torch.Tensor]:
        """The result's fields with one value per point (no eps axis); default none."""
        return {}

    # ------------------------------------------------------------ the shared machinery

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, eps: float | Sequence[float],
                 progress: ProgressFn | None = None) -> R:
        """Check the inputs (:func:`check_inputs`), attack at every eps and package the result: for one
        eps given as a number, the per-eps fields without their leading E axis."""
        eps_values, scalar, labels = check_inputs(self.model, x, y, eps, self.norm, self.checked_as)
        return self.result(self.run(x, labels, eps_values, progress), scalar)

    def result(self, out: Outcome, scalar: bool = False) -> R:
        """The :attr:`result_type` of an outcome, on the CPU (``scalar``: the one eps's values, no E axis)."""
        names = {f.name for f in fields(self.result_type)}
        pick: Callable[[torch.Tensor], torch.Tensor] = (lambda t: t[0].cpu()) if scalar else (lambda t: t.cpu())
        per_eps = {k: pick(v) for k, v in out.values.items() if k in names}
        per_point = {k: v.cpu() for k, v in self.point_values(out).items()}
        return self.result_type(eps=out.eps[0] if scalar else out.eps, norm=self.norm, x_adv=pick(out.x_adv),
                                settings=self.cfg, **per_eps, **per_point)

    def broken_clean(self, clean: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """For attacks that stop: the points already broken without a perturbation (never attacked)."""
        return torch.zeros(clean.shape[0], dtype=torch.bool, device=clean.device)

    @with_fixed_threads
    def run(self, x: torch.Tensor, y: torch.Tensor | None, eps_values: Sequence[float],
            progress: ProgressFn | None = None) -> Outcome:
        """Attack checked inputs ``x`` (labels ``y``) at every eps; see the module docstring."""
        eps_values = self.eps_values = tuple(float(e) for e in eps_values)
        device = model_device(self.model, x)
        x = x.to(device=device, dtype=torch.float32)
        y = None if y is None else y.to(device)
        n, n_eps = x.shape[0], len(eps_values)
        clean = batched(self.model, x, self.cfg.batch_size)
        if self.labelled:
            check_label_range(y, clean.shape[1])
        self.search = search_model(self.model, x, self.cfg.fuse)
        self.prepare(x, y, clean)
        order = sorted(range(n_eps), key=lambda i: eps_values[i])  # rows by increasing eps: row k * n + point
        eps_index = torch.tensor(order, device=device).repeat_interleave(n)
        point = torch.arange(n, device=device).repeat(n_eps)
        rows = Rows(x=x[point], eps=torch.tensor(eps_values, device=device, dtype=torch.float32)[eps_index],
                    sample=point, y=None if y is None else y[point], clean=clean[point], eps_index=eps_index)
        broken = self.broken_clean(clean, y) if self.stops else torch.zeros(n, dtype=torch.bool, device=device)
        todo = (rows.eps > 0) & ~broken[point]
        best_x = rows.x.clone()
        skipped = self._search(rows, todo, best_x, progress)
        values = self._carry(rows, todo, skipped, best_x, broken) if self.stops else self.evaluate(best_x, rows)
        check_inside(best_x, rows.x, rows.eps, self.norm)
        back = torch.tensor(order, device=device).argsort()  # the caller's eps order
        shaped = {k: v.view(n_eps, n, *v.shape[1:])[back] for k, v in values.items()}
        x_adv = best_x.view(n_eps, *x.shape)[back]
        monotone(eps_values, self.better, shaped[self.carry_key], x_adv,
                 *[v for k, v in shaped.items() if k != self.carry_key])
        if progress is not None:
            progress(1.0)
        return Outcome(eps=eps_values, x_adv=x_adv, values=shaped, clean=clean, y=y)

    def _search(self, rows: Rows, todo: torch.Tensor, best_x: torch.Tensor, progress: ProgressFn | None = None,
                chained: bool = True) -> torch.Tensor:
        """Search the rows ``todo`` (in place into ``best_x``); for attacks that stop and ``chained``, a
        point that breaks at an eps is not searched further at larger eps. Returns the rows left unsearched so."""
        idx = torch.nonzero(todo).flatten()
        skipped = torch.zeros(len(rows), dtype=torch.bool, device=rows.x.device)
        if not idx.numel():
            return skipped
        sub = rows.take(idx)
        later: list[list[int]] | None = None
        if self.stops and chained:  # rows come by increasing eps: the same point's later rows
            by_point: dict[int, list[int]] = {}
            for i, p in enumerate(sub.sample.tolist()):
                by_point.setdefault(p, []).append(i)
            later = [[]] * len(sub)
            for members in by_point.values():
                for j, i in enumerate(members):
                    later[i] = members[j + 1:]
        found, moot = self.search_rows(sub, later, progress)
        best_x[idx] = found
        skipped[idx] = moot
        return skipped

    def _carry(self, rows: Rows, todo: torch.Tensor, skipped: torch.Tensor, best_x: torch.Tensor,
               broken: torch.Tensor) -> dict[str, torch.Tensor]:
        """For attacks that stop, by increasing eps and as the original model decides: a point broken at a
        smaller eps takes that witness (it lies in every larger ball); a row the search left unsearched for a
        break the original model does not confirm is searched now. Returns the values of the final witnesses."""
        n = broken.shape[0]
        carried = rows.x[:n].clone()
        parts: list[dict[str, torch.Tensor]] = []
        for k in range(len(rows) // n):
            blk = torch.arange(k * n, (k + 1) * n, device=rows.x.device)
            redo = skipped[blk] & ~broken
            if bool(redo.any()):
                mask = torch.zeros(len(rows), dtype=torch.bool, device=rows.x.device)
                mask[blk[redo]] = True
                self._search(rows, mask, best_x, chained=False)
            best_x[blk[broken]] = carried[broken]
            out = self.evaluate(best_x[blk], rows.take(blk))
            newly = todo[blk] & ~broken & out["broken"]
            broken |= newly
            carried[newly] = best_x[blk[newly]]
            parts.append(out)
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    def search_rows(self, rows: Rows, later: list[list[int]] | None = None,
                    progress: ProgressFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The best iterate per row over the runs of every row's :meth:`plan` (the clean input where none
        beats it), all in one pool (:class:`.pool.Pool`); and the rows left unsearched because a row of
        ``later`` broke (the same point at a smaller eps)."""
        best_x, best = rows.x.clone(), self.clean_score(rows)
        pool = Pool(self, rows, best_x, best, later, progress)
        pool.run()
        return best_x, pool.skipped


def monotone(eps_values: Sequence[float], better: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
             values: torch.Tensor, *carried: torch.Tensor) -> None:
    """In place, along increasing eps: where the witness found at a smaller eps is better, use
    it (it lies inside every larger ball). ``values`` and ``carried`` have a leading E axis."""
    order = sorted(range(len(eps_values)), key=lambda i: eps_values[i])
    for a, b in pairwise(order):
        take = better(values[a], values[b])
        for t in (values, *carried):
            t[b][take] = t[a][take]



def check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float | Sequence[float], norm: str,
                 name: str = "model") -> tuple[tuple[float, ...], bool, torch.Tensor | None]:
    """The checks every public attack makes: norm, eps (one value or a list), images in [0, 1], one
    integer label per image (when given), the model in eval mode. Returns ``(eps values, whether eps
    was one number, labels)``."""
    check_norm(norm)
    eps_values, scalar = check_eps(eps, norm)
    check_images(x)
    labels = None if y is None else check_labels(y, x.shape[0])
    check_eval_mode(model, name)
    return eps_values, scalar, labels


def check_label_range(y: torch.Tensor | None, n_classes: int) -> None:
    """Every label must index one of the model's ``n_classes`` outputs."""
    if y is not None and y.numel() and int(y.max()) >= n_classes:
        raise ValueError(f"label {int(y.max())} is out of range for a model with {n_classes} outputs")
