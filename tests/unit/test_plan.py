"""The planner's order and the executor's units: idempotent against the cache, tables at any time,
identical to the one-call evaluation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import rtcore
from rtcore.runs import EvalSpec, Executor, plan

GRID = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)


def _spec(**kw: object) -> EvalSpec:
    base = dict(backbone="fmnist-cnn-pgd-linf-0.1", tasks=("shapes", "glyphs"), eps=GRID, n=12, attack="fast")
    return EvalSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_the_dashboard_order() -> None:
    s = _spec()
    units = plan(s, first=[4 / 255], priority=[2 / 255])
    got = [(u.task, u.stage, tuple(round(e * 255) for e in u.eps)) for u in units]
    assert got == [
        ("shapes", "fit", (0,)), ("glyphs", "fit", (0,)),
        ("shapes", "attack", (4,)), ("glyphs", "attack", (4,)),
        ("shapes", "attack", (2,)), ("shapes", "head_loss", (2,)),
        ("glyphs", "attack", (2,)), ("glyphs", "head_loss", (2,)),
        ("shapes", "attack", (1, 8)), ("glyphs", "attack", (1, 8)),
        ("shapes", "head_loss", (4,)), ("glyphs", "head_loss", (4,)),
        ("shapes", "head_loss", (0, 1, 8)), ("glyphs", "head_loss", (0, 1, 8)),
    ]
    covered = {(u.task, u.stage, e) for u in units for e in u.eps}
    for t in s.tasks:  # every (task, eps) is attacked once and gets its head/loss attacks once
        assert {e for (tt, st, e) in covered if tt == t and st in ("fit", "attack")} == set(s.eps)
        assert {e for (tt, st, e) in covered if tt == t and st == "head_loss"} == set(s.eps)
    with pytest.raises(ValueError, match="not in the spec"):
        plan(s, first=[3 / 255])


def test_several_specs_interleave_and_options_add_or_drop_stages() -> None:
    a, b = _spec(), _spec(backbone="fmnist-cnn-standard")
    units = plan([a, b], first=[4 / 255])
    assert [u.stage for u in units[:4]] == ["fit"] * 4 and [u.spec for u in units[:4]] == [a, a, b, b]
    assert not [u for u in plan(_spec(head_attack=False, loss_attack=False)) if u.stage == "head_loss"]
    assert [u.stage for u in plan(_spec(sanity=True))][-2:] == ["sanity", "sanity"]


def test_units_are_idempotent_and_the_tables_grow_with_them(tmp_path: Path) -> None:
    s = _spec(tasks=("shapes",), eps=(0.0, 2 / 255, 4 / 255))
    units = plan(s, first=[4 / 255])
    ex = Executor(s, cache_dir=str(tmp_path))
    assert ex.evaluation().summary.empty
    ex.run(units[0])  # the fit: clean rows at eps 0
    assert list(ex.evaluation().summary["eps"]) == [0.0]
    ex.run(units[1])  # the cursor eps, without the head/loss attacks yet
    first = ex.evaluation().summary
    assert list(first["eps"]) == [0.0, s.eps[2]] and not first["head_attack"].any()
    reports = [ex.run(u) for u in units[2:]]
    done = ex.evaluation()
    assert done.summary["head_attack"].all() and done.summary["loss_attack"].all()
    assert all(r.computed for r in reports)
    again = Executor(s, cache_dir=str(tmp_path))
    assert not any(again.run(u).computed for u in plan(s))  # everything is read from the cache
    pd.testing.assert_frame_equal(again.evaluation().samples, done.samples)
    one_call = rtcore.run_evaluation("fmnist-cnn-pgd-linf-0.1", ["shapes"], s.eps, n=12, attack="fast",
                                     cache_dir=str(tmp_path / "fresh"))
    pd.testing.assert_frame_equal(one_call.samples, done.samples)
    pd.testing.assert_frame_equal(one_call.summary.drop(columns="seconds"), done.summary.drop(columns="seconds"))


def test_seeds_that_agree_mod_2_32_pick_different_test_points() -> None:
    from rtcore.runs import test_indices

    small = test_indices(1000, 20, 0)
    assert small.tolist() == torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:20].sort().values.tolist()
    picks = {tuple(test_indices(1000, 20, s).tolist()) for s in (0, 2**32, 2**62, 2**63 - 1)}
    assert len(picks) == 4
    assert test_indices(1000, 20, 2**62).tolist() == test_indices(1000, 20, 2**62).tolist()  # seeded
