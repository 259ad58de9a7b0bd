"""The plans of the end-to-end search: which runs a classifier attack makes, keyed by ``settings.plan``.

One :class:`rtcore.registry.Registry` with the verbs of every kind: :func:`register_plan`,
:func:`list_plans`, :func:`plan_info` and :func:`create_plan` (the runs of one search). An entry
holds the plan function and a description of what it runs for given settings (used by
:func:`rtcore.attacks.describe`). Built in: ``"fixed"`` (here: every restart runs every loss and
target) and ``"adaptive"`` (:mod:`.adaptive`: a screen on every point, targeted runs only for the
survivors close to a boundary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..registry import Registry
from .adaptive import VERSION as ADAPTIVE_VERSION
from .adaptive import adaptive_plan, describe_adaptive
from .search import PlanTarget, RowPlan, RowView, Run, Stage

if TYPE_CHECKING:
    from .settings import AttackSettings

#: ``plan(attack, row)``: the plan of one row (:data:`.search.RowPlan`); it resumes once what it asked for is
#: done, so it can read ``row.best``
PlanFn = Callable[[PlanTarget, RowView], RowPlan]


@dataclass(frozen=True)
class PlanInfo:
    """A named plan: its function, what it runs for given settings in words, and its version (bumped
    whenever the plan computes something else; a version > 1 enters :meth:`AttackSettings.key`)."""

    name: str
    plan: PlanFn
    describe: Callable[[AttackSettings], str]
    description: str = ""
    version: int = 1


_REGISTRY: Registry[PlanInfo] = Registry("attack plan")


def register_plan(name: str, plan: PlanFn, describe: Callable[[AttackSettings], str], description: str = "", *,
                  version: int = 1, overwrite: bool = False) -> PlanInfo:
    """Add a named plan; ValueError if the name is taken, unless ``overwrite``."""
    return _REGISTRY.register(PlanInfo(name=name, plan=plan, describe=describe, description=description,
                                       version=version), overwrite=overwrite)


def list_plans() -> list[str]:
    """The plan names, in registration order."""
    return _REGISTRY.names()


def plan_info(name: str) -> PlanInfo:
    """The entry of a plan; ValueError naming the valid plans if unknown."""
    return _REGISTRY.info(name)


def create_plan(target: PlanTarget, row: RowView) -> RowPlan:
    """The plan of one row by the plan ``target.cfg.plan`` names."""
    return plan_info(target.cfg.plan).plan(target, row)


def ranked_targets(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The wrong classes of each row, most likely first: ``(R, K)`` (the true class last)."""
    return logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True, stable=True)


def fixed_plan(target: PlanTarget, row: RowView) -> RowPlan:
    """Every restart runs every loss of ``cfg.losses``, then the ``cfg.targets`` most likely wrong classes,
    in that order until the point breaks."""
    cfg = target.cfg
    assert row.y is not None
    ranked = ranked_targets(row.clean[None], row.y[None])[0].tolist()
    runs: list[tuple[str, int | None]] = [(loss, None) for loss in cfg.losses]
    runs += [("target", ranked[j]) for j in range(min(cfg.targets, target.n_classes - 1))]
    total = max(len(runs) * cfg.restarts, 1)
    yield Stage(tuple(Run(loss, noise=1000 + r * 64 + k, rule=cfg.step_rule, steps=cfg.end_to_end_steps, target=tgt,
                          done=(r * len(runs) + k + 1) / total)
                      for r in range(cfg.restarts) for k, (loss, tgt) in enumerate(runs)))


def describe_fixed(s: AttackSettings) -> str:
    """The fixed plan in words."""
    runs = " + ".join([*s.losses, *([f"{s.targets} targeted"] if s.targets else [])])
    rule = ", APGD step rule" if s.step_rule == "apgd" else ""
    rule += ", targeted DLR loss" if s.target_loss == "dlr" else ""
    return f"{s.steps} PGD steps; end-to-end: {s.restarts} restart(s) x ({runs}){rule}"


register_plan("fixed", fixed_plan, describe_fixed, "every restart runs every loss, then the most likely wrong classes")
register_plan("adaptive", adaptive_plan, describe_adaptive,
              "a screen on every point; targeted runs, ranked per point, only for survivors close to a boundary",
              version=ADAPTIVE_VERSION)
