"""From specs to an ordered list of small units of work, so that something useful is drawn early.

A :class:`Unit` is one stage of one task of one spec over some eps: ``fit`` (the task's features and
linear probe, or its adaptation by a transfer method, and the clean rows at eps 0), ``attack`` (the feature attack
and the end-to-end attack at the unit's eps), ``head_loss`` (the head-subspace and cross-entropy
attacks) or ``sanity`` (the sanity checks over every eps). Each unit is idempotent against the
verified cache: running it again computes nothing, and every eps is attacked on its own, so the
tables never depend on the order or grouping of the units.

:func:`plan` orders the units of several specs (the dashboard compares backbones or probes on the
same tasks) as the dashboard draws them:

1. every task's ``fit`` (clean accuracy first);
2. ``attack`` at the ``first`` eps (the eps cursor), per task;
3. each ``priority`` eps (an eps the user added) with its ``head_loss``, per task;
4. ``attack`` over the rest of the eps, per task;
5. ``head_loss`` at the first eps, then over the rest, per task;
6. ``sanity`` per task, when the spec asks for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..config import eps_key
from .progress import Kind
from .spec import EvalSpec, parse_eps_text

Stage = Literal["fit", "attack", "head_loss", "sanity"]
STAGES: tuple[str, ...] = ("fit", "attack", "head_loss", "sanity")


@dataclass(frozen=True)
class Unit:
    """One stage of one task of one spec, over ``eps`` (empty for ``fit``; every eps for ``sanity``)."""

    spec: EvalSpec
    task: str
    stage: Stage
    eps: tuple[float, ...] = ()

    @property
    def work(self) -> float:
        """Its size for the time estimate: one per (task, eps) of attack work, one per fit or sanity run."""
        if self.stage in ("fit", "sanity"):
            return 1.0
        return float(sum(1 for e in self.eps if e > 0))

    def describe(self) -> str:
        """``shapes · attack at 2 eps`` (no UI text beyond the facts)."""
        what = {"fit": "probe fit", "attack": "feature and end-to-end attacks",
                "head_loss": "head-subspace and loss attacks", "sanity": "sanity checks"}[self.stage]
        eps = f" · {len(self.eps)} eps" if self.eps and self.stage != "sanity" else ""
        return f"{self.task} · {what}{eps}"


def _attacked(eps: Iterable[float]) -> tuple[float, ...]:
    """The eps of attack units (eps 0, where robust means correct, is read with the fit)."""
    return tuple(e for e in eps if e > 0)


def plan(specs: EvalSpec | Sequence[EvalSpec], *, first: Sequence[float] = (),
         priority: Sequence[float] = ()) -> list[Unit]:
    """The units of ``specs`` in the order described in the module docstring.

    ``first``: the eps computed right after the fits (the dashboard's cursor); ``priority``: eps
    computed completely (with the head-subspace and loss attacks) before the rest. Both must be
    eps of every spec. With neither, every task's whole grid follows the fits. A fit unit also
    reads eps 0 (the clean rows), which costs one forward pass.
    """
    specs = [specs] if isinstance(specs, EvalSpec) else list(specs)
    if not specs:
        raise ValueError("plan needs at least one spec")
    first_k = _attacked(dict.fromkeys(eps_key(parse_eps_text(e)) for e in first))  # type: ignore[arg-type]
    prio_k = tuple(e for e in _attacked(dict.fromkeys(eps_key(parse_eps_text(e)) for e in priority))  # type: ignore[arg-type]
                   if e not in first_k)
    for spec in specs:
        missing = [e for e in (*first_k, *prio_k) if e not in spec.eps]
        if missing:
            raise ValueError(f"eps {missing} are not in the spec's eps {list(spec.eps)}")
    who = [(s, t) for s in specs for t in s.tasks]
    head = [(s, t) for s, t in who if s.head_attack or s.loss_attack]

    def rest(s: EvalSpec) -> tuple[float, ...]:
        return _attacked(e for e in s.eps if e not in first_k and e not in prio_k)

    units: list[Unit] = [Unit(s, t, "fit", tuple(e for e in s.eps if e == 0)) for s, t in who]
    if first_k:
        units += [Unit(s, t, "attack", first_k) for s, t in who]
    for e in prio_k:
        for s, t in who:
            units.append(Unit(s, t, "attack", (e,)))
            if (s, t) in head:
                units.append(Unit(s, t, "head_loss", (e,)))
    units += [Unit(s, t, "attack", rest(s)) for s, t in who if rest(s)]
    if first_k:
        units += [Unit(s, t, "head_loss", first_k) for s, t in head]
    for s, t in head:
        zero = tuple(e for e in s.eps if e == 0)
        if zero or rest(s):
            units.append(Unit(s, t, "head_loss", zero + rest(s)))
    units += [Unit(s, t, "sanity", s.eps) for s, t in who if s.sanity]
    return units


def test_indices(n_test: int, n: int, seed: int) -> torch.Tensor:
    """A seeded random subset of ``n`` test points (sorted), all of them if ``n >= n_test``.

    Seeds below 2**32 draw with torch's generator (as every earlier version did, so their subsets and
    numbers are unchanged); torch's CPU generator keeps only 32 bits, so larger seeds draw with
    numpy's 64-bit generator: distinct seeds never share a subset because they agree mod 2**32."""
    if n >= n_test:
        return torch.arange(n_test)
    if seed < 2**32:
        return torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    import numpy as np

    perm = np.random.Generator(np.random.PCG64(seed)).permutation(n_test)[:n]
    return torch.from_numpy(np.sort(perm)).long()


def unit_kind(unit: Unit) -> tuple[Kind, float]:
    """A planned unit for the time estimate: its stage, in the family of its backbone, in the domain of its
    attack strength (another strength is never a guess for it), and its work, scaled by the test points it
    attacks (a fit's cost is the training split's, whatever n)."""
    spec = unit.spec
    scale = 1.0 if unit.stage == "fit" else spec.n / 100
    return (spec.strength, spec.backbone.display, unit.stage), unit.work * scale
