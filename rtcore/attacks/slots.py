"""What the pool (:mod:`.pool`) keeps of a search: the attack it searches for (:class:`Searcher`), the runs in
flight as parallel tensors (:class:`Slots`), the bookkeeping of each row's runs (:class:`PoolRow`,
:class:`PoolRun`) and the runs' starting iterates (:func:`start_points`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from torch import nn

from .apgd import APGDState
from .geometry import power_start, random_start, row_noise
from .search import Jobs, Probe, RowPlan, Rows, RowView, Run

if TYPE_CHECKING:
    from .settings import AttackSettings

__all__ = ["NEVER", "PoolRow", "PoolRun", "Searcher", "Slots", "start_points"]


class Searcher(Protocol):
    """What the pool reads off the attack whose rows it searches (:class:`.base.Attack`)."""

    cfg: AttackSettings
    norm: str
    seed: int
    search: nn.Module  # the module the iterations run on
    stops: ClassVar[bool]
    losses: ClassVar[tuple[str, ...]]

    def plan(self, row: RowView) -> RowPlan: ...

    def objective(self, xa: torch.Tensor, rows: Rows, jobs: Jobs) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class Slots:
    """The runs in flight, one per slot, as parallel tensors (taken apart as runs end, joined as runs start)."""

    jobs: Jobs  # what the objective reads: row (index into the search's rows), loss, target
    t: torch.Tensor  # (S,) long: steps taken
    steps: torch.Tensor  # (S,) long
    apgd: torch.Tensor  # (S,) bool: APGD's rule, else the cosine schedule
    x0: torch.Tensor  # (S, ...) the clean input of the row
    eps: torch.Tensor  # (S,)
    x: torch.Tensor  # (S, ...) the current iterate
    best: torch.Tensor  # (S,) the best score of the run so far
    best_x: torch.Tensor  # (S, ...) where
    patience: torch.Tensor  # (S, G) long: after so many steps the run ends if its best is below the floor
    floor: torch.Tensor  # (S, G)
    ended: torch.Tensor  # (S,) bool: scored its last iterate, broke or gave up; leaves at the next compaction
    broke: torch.Tensor  # (S,) bool
    state: APGDState

    @classmethod
    def fresh(cls, runs: Sequence[Run], jobs: Jobs, x0: torch.Tensor, eps: torch.Tensor, x: torch.Tensor,
              steps: Sequence[int]) -> Slots:
        """Slots for ``runs`` starting at ``x``: no step taken, no best yet, their give-up checkpoints, fresh rule
        states."""
        dev, n = x.device, len(runs)
        width = max(1, *(len(u.give_up) for u in runs))
        give_up = [list(u.give_up) + [(NEVER, float("-inf"))] * (width - len(u.give_up)) for u in runs]
        t_steps = torch.tensor(list(steps), device=dev)
        return cls(jobs=jobs, t=torch.zeros(n, dtype=torch.long, device=dev), steps=t_steps,
                   apgd=torch.tensor([u.rule == "apgd" for u in runs], device=dev), x0=x0, eps=eps, x=x,
                   best=torch.full((n,), float("-inf"), device=dev), best_x=x.clone(),
                   patience=torch.tensor([[k for k, _ in g] for g in give_up], device=dev),
                   floor=torch.tensor([[f for _, f in g] for g in give_up], device=dev, dtype=torch.float32),
                   ended=torch.zeros(n, dtype=torch.bool, device=dev), broke=torch.zeros(n, dtype=torch.bool, device=dev),
                   state=APGDState.fresh(x, t_steps))

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def take(self, idx: torch.Tensor) -> Slots:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return Slots(**{k: v.take(idx) if isinstance(v, APGDState) else v[idx] for k, v in out.items()})

    def cat(self, other: Slots) -> Slots:
        out = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, APGDState):
                out[f.name] = a.cat(b)
            elif isinstance(a, Jobs):
                out[f.name] = Jobs(*(torch.cat([getattr(a, g.name), getattr(b, g.name)]) for g in fields(Jobs)))
            elif f.name in ("patience", "floor") and a.shape[1] != b.shape[1]:  # pad the fewer checkpoints: never
                g = max(a.shape[1], b.shape[1])
                fill = NEVER if f.name == "patience" else float("-inf")
                out[f.name] = torch.cat([_widen(a, g, fill), _widen(b, g, fill)])
            else:
                out[f.name] = torch.cat([a, b])
        return Slots(**out)


#: a give-up checkpoint that never comes
NEVER = 2**62


def _widen(t: torch.Tensor, width: int, fill: float) -> torch.Tensor:
    return torch.cat([t, t.new_full((t.shape[0], width - t.shape[1]), fill)], dim=1)


@dataclass
class PoolRun:
    """One run of a row's current stage: pending, in a slot, or done (with its best)."""

    run: Run
    state: str = "pending"  # "pending", "active" (in a slot), "done", "cancelled" (will never count)
    broke: bool = False
    best: torch.Tensor | None = None
    best_x: torch.Tensor | None = None


@dataclass
class PoolRow:
    """A row's plan and where it stands."""

    plan: RowPlan
    stage: list[PoolRun] = field(default_factory=list)
    go_on: Callable[[torch.Tensor], bool] | None = None
    folded: int = 0  # the leading runs of the stage folded into the row's best
    probe: Probe | None = None
    finished: bool = False
    done: float = 0.0  # of the plan, after the runs before the current stage
    stage_done: float = 0.0  # ... after the current stage
    stage_steps: int = 0


def start_points(att: Searcher, rows: Rows, kind: str, noise: int, x0: torch.Tensor, eps: torch.Tensor,
                 sample: torch.Tensor, jobs: Jobs, chunk: int) -> torch.Tensor:
    """The runs' starting iterates, seeded per row: random starts, or power starts (``chunk`` rows at a time, along
    each row's local Jacobian)."""
    norm, seed = att.norm, att.seed
    if kind != "power":
        return random_start(x0, eps, norm, row_noise(x0, eps, sample, seed, noise, norm == "l2"))
    out = torch.empty_like(x0)
    for lo in range(0, x0.shape[0], chunk):
        part = slice(lo, lo + chunk)
        sub = jobs[part]

        def objective(xa: torch.Tensor, r: torch.Tensor, sub: Jobs = sub) -> tuple[torch.Tensor, torch.Tensor]:
            return att.objective(xa, rows, sub[r])

        xs, es = x0[part], eps[part]
        out[part] = power_start(objective, xs, es, norm, row_noise(xs, es, sample[part], seed, noise, True))
    return out
