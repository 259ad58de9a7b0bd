"""rtcore.runs.selection: a dashboard session's selection as data (defaults, choices, added eps, URL queries)."""

from __future__ import annotations

import numpy as np
import pytest

from rtcore.config import NORMS, check_eps, default_eps, eps_grid, eps_key
from rtcore.models.ref import BackboneRef
from rtcore.runs import selection


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (selection.ENV_N, selection.ENV_TASKS, selection.ENV_ATTACK, selection.ENV_BACKBONE,
                selection.ENV_NORM):
        monkeypatch.delenv(var, raising=False)


def test_the_defaults_are_the_classroom_spec() -> None:
    spec = selection.classroom()
    d = selection.defaults()
    assert (d["backbone"], d["norm"], d["n"], d["attack"], d["probe"]) == \
        (spec.backbone.name, spec.norm, spec.n, spec.strength, spec.probe)
    assert d["tasks"] == list(spec.tasks) and d["eps"] == default_eps(spec.norm)
    for key, options in selection.choices().items():
        assert d[key] in options, key


def test_a_selection_survives_its_query() -> None:
    chosen = {**selection.defaults(), "eps": eps_key(3 / 255), "norm": "linf", "lesson": 2, "present": True,
              "compare_active": True}
    values, problems = selection.from_query(selection.to_query(chosen))
    assert not problems
    for key in ("backbone", "norm", "eps", "tasks", "n", "attack", "probe", "lesson", "present", "compare_backbones"):
        assert values[key] == chosen[key], key
    assert values["extra_eps"] == {"linf": [eps_key(3 / 255)]}, "an eps off the grid is added, as the form would"


def test_a_query_names_every_bad_value_and_keeps_the_rest() -> None:
    values, problems = selection.from_query({"norm": "l3", "n": "7", "tasks": "shapes,nope", "eps": "1/0",
                                             "attack": "fast"})
    assert len(problems) == 4 and values == {"tasks": ["shapes"], "attack": "fast"}
    assert any("norm='l3'" in p for p in problems) and any("'nope'" in p for p in problems)


def test_an_uploaded_backbone_or_own_data_never_enters_a_query() -> None:
    query = selection.to_query({"backbone": "upload: my checkpoint", "tasks": ["shapes", "folder:/srv/data"]})
    assert "backbone" not in query and query["tasks"] == "shapes"


@pytest.mark.parametrize("norm", NORMS)
def test_new_eps_agrees_with_the_library_everywhere(norm: str) -> None:
    """The verdict is an error exactly where check_eps refuses; zero, grid and confirm exactly where they hold."""
    limit = eps_grid(norm, (selection.CONFIRM_STEPS,))[0]
    for typed in [*np.linspace(0.0, 255.0 if norm == "linf" else 100.0, 301), 1e9]:
        e = selection.eps_from_input(float(typed), norm)
        got = selection.new_eps(e, norm)
        try:
            check_eps(e, norm)
        except ValueError as err:
            assert got.verdict == "error" and got.reason == str(err)
            continue
        expected = "zero" if e == 0 else "grid" if e in eps_grid(norm) else "confirm" if e > limit else "ok"
        assert got.verdict == expected and got.eps == e, (typed, got)


def test_the_request_of_a_selection() -> None:
    request = selection.request([BackboneRef("fmnist-cnn-standard")], ["shapes"], "l2", 20, "fast", extras=[2.5])
    assert request.first == (default_eps("l2"),) and request.priority == (2.5,)
    assert {s.seed for s in request.specs} == {selection.classroom().seed}
