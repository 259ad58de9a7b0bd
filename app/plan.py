"""What a dashboard evaluation computes, and in which order.

An :class:`EvalRequest` is the sidebar's selection *without* the eps cursor: the cursor only
moves over results that are already computed, so moving it never changes the request.

:func:`plan` orders the work so that something useful is drawn early and nothing is computed
twice, in eps *groups* (:func:`eps_groups`). rtcore attacks each eps on its own, so the groups only
set the order: one command over every eps reproduces the final tables (:mod:`app.exports`):

1. first look, per task: eps 0 (the probe fit: clean accuracy), then the default eps (4/255 or 0.4),
   without the head-subspace and loss attacks;
2. every eps the user added, per task (complete, one eps per sweep);
3. the rest of the grid, per task, still without the head-subspace and loss attacks;
4. the head-subspace and loss attacks for the same groups, per task; the last of these steps
   covers the whole grid (its feature and end-to-end attacks are cached by then) and is the
   *final* step whose per-sample table the downloads contain;
5. with added eps, one more cached step per task over every eps: the final step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rtcore.config import NORMS, default_cache_dir, eps_key

from .backbones import BackboneRef
from .state import PROBES, SEED, STRENGTHS, default_eps, eps_grid

# the kinds of work a step does, for the time estimate (see app.jobs.Throughput)
PROBE, ATTACK, HEADLOSS, EXTRA, CACHED = "probe fit", "attack", "head/loss attack", "added ε", "cached"


@dataclass(frozen=True)
class EvalRequest:
    """Everything that defines a dashboard evaluation: backbones, probes, tasks, norm, n, strength,
    and the eps added to the grid (``extras``)."""

    backbones: tuple[BackboneRef, ...]
    tasks: tuple[str, ...]
    norm: str
    n: int
    attack: str
    probes: tuple[str, ...] = ("logistic",)
    extras: tuple[float, ...] = ()
    seed: int = SEED
    cache_dir: str = ""

    @property
    def grid(self) -> tuple[float, ...]:
        return eps_grid(self.norm)

    @property
    def eps_values(self) -> tuple[float, ...]:
        """Every eps the request computes, sorted: the grid and the added eps."""
        return tuple(sorted({*self.grid, *self.extras}))

    def groups(self) -> list[tuple[float, ...]]:
        """The eps groups, in the order the steps first compute them."""
        return eps_groups(self.norm, self.extras)

    def steps(self) -> list[Step]:
        return plan(self)


@dataclass(frozen=True)
class Step:
    """One call of ``rtcore.run_evaluation``: one backbone, probe and task, a group of eps;
    ``full``: with the head-subspace and loss attacks; ``final``: its tables are the export."""

    ref: BackboneRef
    probe: str
    task: str
    eps: tuple[float, ...]
    full: bool
    final: bool = False
    kind: str = ATTACK
    units: int = 1  # (task, eps) units of attack work (a probe fit counts as one), for the time estimate


def _nonzero(eps: tuple[float, ...]) -> int:
    return sum(1 for e in eps if e > 0)


def eps_groups(norm: str, extras: tuple[float, ...] = ()) -> list[tuple[float, ...]]:
    """``(0,)``, ``(default eps,)``, the rest of the grid, then each added eps alone."""
    grid = eps_grid(norm)
    first = default_eps(norm)
    rest = tuple(e for e in grid if e not in (0.0, first))
    return [(0.0,), (first,), rest, *((e,) for e in extras)]


def plan(request: EvalRequest) -> list[Step]:
    """The steps of a request in the order described in the module docstring."""
    norm, extras = request.norm, request.extras
    g0, g1, rest, *_ = eps_groups(norm, extras)
    grid = request.grid
    who = [(ref, probe, task) for ref in request.backbones for probe in request.probes for task in request.tasks]
    steps: list[Step] = []
    for ref, probe, task in who:
        steps.append(Step(ref, probe, task, g0, False, kind=PROBE, units=1))
        steps.append(Step(ref, probe, task, g1, False, units=_nonzero(g1)))
    for e in extras:
        steps += [Step(ref, probe, task, (e,), True, kind=EXTRA, units=1) for ref, probe, task in who]
    if rest:
        steps += [Step(ref, probe, task, rest, False, units=_nonzero(rest)) for ref, probe, task in who]
    for ref, probe, task in who:
        steps.append(Step(ref, probe, task, g0, True, kind=CACHED, units=0))
        steps.append(Step(ref, probe, task, g1, True, kind=HEADLOSS, units=_nonzero(g1)))
        steps.append(Step(ref, probe, task, grid, True, final=not extras, kind=HEADLOSS, units=_nonzero(rest)))
    if extras:
        steps += [Step(ref, probe, task, request.eps_values, True, final=True, kind=CACHED, units=0)
                  for ref, probe, task in who]
    return steps


def make_request(backbones: list[BackboneRef] | tuple[BackboneRef, ...], tasks: list[str] | tuple[str, ...],
                 norm: str, n: int, attack: str, *, probes: tuple[str, ...] | list[str] = ("logistic",),
                 extras: tuple[float, ...] | list[float] = (), seed: int = SEED,
                 cache_dir: str | os.PathLike[str] | None = None) -> EvalRequest:
    """A validated request; ``cache_dir`` defaults to ``$RTCORE_CACHE_DIR`` or ``~/.cache/rtcore``."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} must be one of {list(NORMS)}")
    if attack not in STRENGTHS:
        raise ValueError(f"attack={attack!r} must be one of {list(STRENGTHS)}")
    if not backbones:
        raise ValueError("choose at least one backbone")
    if not tasks:
        raise ValueError("choose at least one task in the sidebar")
    bad = [p for p in probes if p not in PROBES]
    if bad or not probes:
        raise ValueError(f"probes={list(probes)} must be some of {list(PROBES)}")
    grid = set(eps_grid(norm))
    added = []
    for e in extras:
        k = eps_key(e)
        if not 0.0 < k <= 1.0:
            raise ValueError(f"eps={e} must be in (0, 1] pixel units")
        if k not in grid and k not in added:
            added.append(k)
    if int(n) < 1:
        raise ValueError(f"n={n} must be a positive number of test points")
    cdir = str(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    return EvalRequest(tuple(dict.fromkeys(backbones)), tuple(dict.fromkeys(tasks)), norm, int(n), attack,
                       tuple(dict.fromkeys(probes)), tuple(sorted(added)), int(seed), cdir)
