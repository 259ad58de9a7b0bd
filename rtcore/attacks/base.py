"""The attack base: everything but the loss and the step rule, in one place.

An :class:`Attack` takes checked inputs and a list of eps and does, for every attack alike:

* device and dtype (the model's device, float32), the clean outputs on the original model and
  the module the iterations run on (a verified fused copy, :func:`.engine.search_model`);
* eps expansion: one row per (eps, point), each with its own eps, so several eps share a call;
* the search: the runs the attack's :meth:`Attack.plan` yields, each over the live rows in
  batches, from a seeded random (or power) start, through the one loop
  :func:`.engine.descend` with the run's step rule, keeping the best iterate per row and, for
  attacks that :attr:`Attack.stops`, stopping a row once it breaks;
* witness carry-over: for attacks that stop, eps are attacked in increasing order and a point
  broken at a smaller eps is not attacked again (its witness lies in every larger ball); for all,
  a smaller eps's witness replaces a worse larger-eps one (results monotone in eps);
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import ClassVar, Generic, TypeVar

import torch
from torch import nn

from ..config import check_eps, check_norm
from ..numerics import with_fixed_threads
from ..validation import check_eval_mode, check_images, check_labels
from .apgd import APGDRule
from .engine import CosineRule, StepRule, batched, descend, model_device, search_model
from .geometry import Objective, check_inside, power_start, random_start, row_noise
from .search import ProgressFn, Rows, Run, SearchState
from .settings import AttackSettings


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
    #: the model's name in error messages ("model", "backbone")
    checked_as: ClassVar[str] = "model"
    #: the attack takes labels (checked against the model's outputs)
    labelled: ClassVar[bool] = False
    #: a row is done once its score is > 0 (a misclassification): eps are attacked in increasing
    #: order, each only on points not broken at a smaller eps, and broken rows leave the loop
    stops: ClassVar[bool] = False
    #: the value that orders witnesses across eps (:meth:`better`) in :meth:`run`'s carry-over
    carry_key: ClassVar[str]

    def __init__(self, model: nn.Module, cfg: AttackSettings, norm: str, seed: int) -> None:
        self.model, self.cfg, self.norm, self.seed = model, cfg, norm, int(seed)
        self.search: nn.Module = model

    # ------------------------------------------------------------ what a subclass writes

    def prepare(self, x: torch.Tensor, y: torch.Tensor | None, clean: torch.Tensor) -> None:
        """Called once before any search, with the inputs, labels and clean outputs (checks, references)."""

    @abstractmethod
    def clean_score(self, rows: Rows) -> torch.Tensor:
        """The score of each row's clean input: where the best iterate starts."""

    @abstractmethod
    def plan(self, rows: Rows, state: SearchState) -> Iterator[Run]:
        """The runs of one search. A generator: it resumes after each run, so it can look at
        ``state`` (the best iterate and score per row so far) to decide what to run next."""

    @abstractmethod
    def objective(self, run: Run, rows: Rows, idx: torch.Tensor) -> Objective:
        """The loss to ascend and the score to keep, for the rows ``idx`` of ``rows`` in one batch
        (the objective is called with indices into that batch)."""

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
        eps_values = tuple(float(e) for e in eps_values)
        device = model_device(self.model, x)
        x = x.to(device=device, dtype=torch.float32)
        y = None if y is None else y.to(device)
        n, n_eps = x.shape[0], len(eps_values)
        clean = batched(self.model, x, self.cfg.batch_size)
        if self.labelled:
            check_label_range(y, clean.shape[1])
        self.search = search_model(self.model, x, self.cfg.fuse)
        self.prepare(x, y, clean)
        eps_rows = torch.tensor(eps_values, device=device, dtype=torch.float32).repeat_interleave(n)
        point = torch.arange(n, device=device).repeat(n_eps)
        x_rows = x.repeat(n_eps, *([1] * (x.ndim - 1)))
        best_x = x_rows.clone()
        values: dict[str, torch.Tensor] = {}
        broken = self.broken_clean(clean, y) if self.stops else None  # per point, at the eps done so far
        carried = x.clone()  # their witnesses, valid in every larger ball

        def rows_of(r: torch.Tensor) -> Rows:
            shared = {eps_values[i] for i in set((r // n).tolist())}
            return Rows(x=x[point[r]], eps=eps_rows[r], sample=point[r], y=None if y is None else y[point[r]],
                        clean=clean[point[r]], eps_value=shared.pop() if len(shared) == 1 else None)

        groups = self._groups(eps_values, n, device)
        for j, (evaluate, search_mask) in enumerate(groups):
            sub = None if progress is None else (lambda f, j=j: progress((j + f) / len(groups)))
            if broken is not None:
                best_x[evaluate] = carried
                search_mask = search_mask & ~broken
            todo = evaluate[search_mask]
            if todo.numel():
                best_x[todo] = self.search_rows(rows_of(todo), sub)
            out = self.evaluate(best_x[evaluate], rows_of(evaluate))
            for k, v in out.items():
                if k not in values:
                    values[k] = torch.empty((n * n_eps, *v.shape[1:]), dtype=v.dtype, device=v.device)
                values[k][evaluate] = v
            if broken is not None:
                newly = search_mask & out["broken"]  # rows of this group = points
                broken |= newly
                carried[newly] = best_x[evaluate][newly]
        check_inside(best_x, x_rows, eps_rows, self.norm)
        shaped = {k: v.view(n_eps, n, *v.shape[1:]) for k, v in values.items()}
        x_adv = best_x.view(n_eps, *x.shape)
        monotone(eps_values, self.better, shaped[self.carry_key], x_adv,
                 *[v for k, v in shaped.items() if k != self.carry_key])
        if progress is not None:
            progress(1.0)
        return Outcome(eps=eps_values, x_adv=x_adv, values=shaped, clean=clean, y=y)

    def _groups(self, eps_values: tuple[float, ...], n: int,
                device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(rows to evaluate, mask of those to search) per group: for attacks that stop, one group
        per eps in increasing order (rows = the points); for the others one group of all rows.
        Rows at eps 0 are never searched."""
        if self.stops:
            order = sorted(range(len(eps_values)), key=lambda i: eps_values[i])
            return [(torch.arange(i * n, (i + 1) * n, device=device),
                     torch.full((n,), eps_values[i] > 0, dtype=torch.bool, device=device)) for i in order]
        eps = torch.tensor(eps_values, device=device).repeat_interleave(n)
        return [(torch.arange(n * len(eps_values), device=device), eps > 0)]

    def search_rows(self, rows: Rows, progress: ProgressFn | None = None) -> torch.Tensor:
        """The best iterate per row over the runs of :meth:`plan` (the clean input where none beats it)."""
        cfg = self.cfg
        state = SearchState(best_x=rows.x.clone(), best=self.clean_score(rows))
        best_x, best = state.best_x, state.best
        done = 0.0
        for run in self.plan(rows, state):
            mask = torch.ones(len(rows), dtype=torch.bool, device=rows.x.device) if run.rows is None else run.rows.clone()
            if self.stops:
                mask &= best <= 0  # broken rows are done
            if run.target is not None:
                mask &= run.target >= 0
            live = torch.nonzero(mask).flatten()
            steps = run.steps or cfg.steps
            for lo in range(0, live.numel(), cfg.batch_size):
                idx = live[lo:lo + cfg.batch_size]
                objective = self.objective(run, rows, idx)
                bx, bs, xs, es = best_x[idx], best[idx], rows.x[idx], rows.eps[idx]
                start = self._start(run, objective, xs, es, rows.sample[idx])
                rule: StepRule = APGDRule(steps, start) if run.rule == "apgd" else CosineRule(steps, cfg.step_max)
                descend(objective, xs, start, es, self.norm, steps, rule, bx, bs, stop_at_positive=self.stops)
                best_x[idx], best[idx] = bx, bs
                if progress is not None:
                    progress(done + (run.done - done) * min(lo + cfg.batch_size, live.numel()) / live.numel())
            done = run.done
            if progress is not None:
                progress(done)
        return best_x

    def _start(self, run: Run, objective: Objective, xs: torch.Tensor, es: torch.Tensor,
               sample: torch.Tensor) -> torch.Tensor:
        if run.start == "power":
            return power_start(objective, xs, es, self.norm, row_noise(xs, es, sample, self.seed, run.noise, True))
        return random_start(xs, es, self.norm, row_noise(xs, es, sample, self.seed, run.noise, self.norm == "l2"))


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
