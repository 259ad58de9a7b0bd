"""The attacks' plans form a registry."""

from __future__ import annotations

import pytest

from rtcore.attacks import AttackSettings, create_plan, describe, list_plans, plan_info, register_plan
from rtcore.attacks import plans as plans_mod


def test_the_plans_are_a_registry_the_settings_and_describe_use(monkeypatch: pytest.MonkeyPatch) -> None:
    assert list_plans()[:2] == ["fixed", "adaptive"]
    adaptive = AttackSettings(plan="adaptive")
    feature = "feature attack: 5 start(s) of 30 PGD steps"
    assert describe(adaptive) == f"{plan_info('adaptive').describe(adaptive)}; {feature}"
    with pytest.raises(ValueError, match="plan='greedy' is unknown; use one of \\['fixed', 'adaptive'"):
        AttackSettings(plan="greedy")
    with pytest.raises(ValueError, match="unknown attack plan 'greedy'"):
        plan_info("greedy")
    monkeypatch.setattr(plans_mod, "_REGISTRY", plans_mod.Registry("attack plan"))
    seen: list[str] = []

    def one_run(target, row):  # type: ignore[no-untyped-def]
        seen.append(target.cfg.plan)
        yield from ()

    register_plan("fixed", one_run, lambda s: "no runs")
    register_plan("greedy", one_run, lambda s: f"greedy with {s.targets} targets")
    s = AttackSettings(plan="greedy", targets=2)
    assert describe(s).startswith("greedy with 2 targets; feature attack")
    with pytest.raises(ValueError, match="already registered"):
        register_plan("greedy", one_run, lambda s: "")

    class Target:
        cfg, norm, n_classes, search = s, "linf", 3, None

    assert list(create_plan(Target(), None)) == [] and seen == ["greedy"]  # type: ignore[arg-type]
