"""The plans of the end-to-end search: which runs a classifier attack makes, keyed by ``settings.plan``.

One :class:`rtcore.registry.Registry` with the verbs of every kind: :func:`register_plan`,
:func:`list_plans`, :func:`plan_info` and :func:`create_plan` (the runs of one search). An entry
holds the plan function and a description of what it runs for given settings (used by
:func:`rtcore.attacks.describe`). Built in: ``"fixed"`` (here: every restart runs every loss and
target) and ``"adaptive"`` (:mod:`.adaptive`: a screen on every point, targeted runs only for the
survivors close to a boundary).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..registry import Registry
from .adaptive import adaptive_plan, describe_adaptive
from .search import PlanTarget, Rows, Run, SearchState

if TYPE_CHECKING:
    from .settings import AttackSettings

#: ``plan(attack, rows, state)``: a generator of runs; it resumes after each run, so it can read ``state``
PlanFn = Callable[[PlanTarget, Rows, SearchState], Iterator[Run]]


@dataclass(frozen=True)
class PlanInfo:
    """A named plan: its function and what it runs for given settings, in words."""

    name: str
    plan: PlanFn
    describe: Callable[[AttackSettings], str]
    description: str = ""


_REGISTRY: Registry[PlanInfo] = Registry("attack plan")


def register_plan(name: str, plan: PlanFn, describe: Callable[[AttackSettings], str], description: str = "", *,
                  overwrite: bool = False) -> PlanInfo:
    """Add a named plan; ValueError if the name is taken, unless ``overwrite``."""
    return _REGISTRY.register(PlanInfo(name=name, plan=plan, describe=describe, description=description),
                              overwrite=overwrite)


def list_plans() -> list[str]:
    """The plan names, in registration order."""
    return _REGISTRY.names()


def plan_info(name: str) -> PlanInfo:
    """The entry of a plan; ValueError naming the valid plans if unknown."""
    return _REGISTRY.info(name)


def create_plan(target: PlanTarget, rows: Rows, state: SearchState) -> Iterator[Run]:
    """The runs of one search by the plan ``target.cfg.plan`` names."""
    return plan_info(target.cfg.plan).plan(target, rows, state)


def ranked_targets(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The wrong classes of each row, most likely first: ``(R, K)`` (the true class last)."""
    return logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)


def fixed_plan(target: PlanTarget, rows: Rows, state: SearchState) -> Iterator[Run]:
    """Every restart runs every loss of ``cfg.losses``, then the ``cfg.targets`` most likely wrong classes."""
    cfg = target.cfg
    assert rows.y is not None
    ranked = ranked_targets(rows.clean, rows.y)
    runs: list[tuple[str, torch.Tensor | None]] = [(loss, None) for loss in cfg.losses]
    runs += [("target", ranked[:, j]) for j in range(min(cfg.targets, target.n_classes - 1))]
    total = max(len(runs) * cfg.restarts, 1)
    for r in range(cfg.restarts):
        for k, (loss, tgt) in enumerate(runs):
            yield Run(loss, noise=1000 + r * 64 + k, rule=cfg.step_rule, steps=cfg.end_to_end_steps, target=tgt,
                      done=(r * len(runs) + k + 1) / total)


def describe_fixed(s: AttackSettings) -> str:
    """The fixed plan in words."""
    runs = " + ".join([*s.losses, *([f"{s.targets} targeted"] if s.targets else [])])
    rule = ", APGD step rule" if s.step_rule == "apgd" else ""
    rule += ", targeted DLR loss" if s.target_loss == "dlr" else ""
    return f"{s.steps} PGD steps; end-to-end: {s.restarts} restart(s) x ({runs}){rule}"


register_plan("fixed", fixed_plan, describe_fixed, "every restart runs every loss, then the most likely wrong classes")
register_plan("adaptive", adaptive_plan, describe_adaptive,
              "a screen on every point; targeted runs, ranked per point, only for survivors close to a boundary")
