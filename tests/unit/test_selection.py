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


def test_checked_puts_what_is_not_offered_back_at_its_default() -> None:
    d = selection.defaults()
    raw = {**d, "backbone": "gone", "attack": "extreme", "n": 7, "tasks": ["shapes", "gone"], "norm": "linf",
           "eps": 0.05, "extra_eps": {"linf": [], "l2": []}}
    out = selection.checked(raw, ["shapes", "glyphs"])
    assert (out["backbone"], out["attack"], out["n"]) == (d["backbone"], d["attack"], d["n"])
    assert out["tasks"] == ["shapes"] and out["probe"] == d["probe"]
    assert out["eps"] == eps_grid("linf")[-1] == eps_key(16 / 255), "0.05 (12.75/255): the nearest grid step is 16/255"
    raw["extra_eps"] = {"linf": [0.05]}
    assert selection.checked(raw, ["shapes"])["eps"] == 0.05, "an added eps is a cursor position"
    assert selection.checked({**raw, "backbone": "mine"}, [], backbones=("mine",))["backbone"] == "mine"


def test_with_task_adds_own_data_once_and_brings_n_down(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((20, 1, 8, 8), np.float32), "y_train": np.arange(20) % 2,
              "x_test": rng.random((30, 1, 8, 8), np.float32), "y_test": np.arange(30) % 2}
    np.savez(tmp_path / "mine.npz", **arrays)
    start = {**selection.defaults(), "n": 200, "user_tasks": []}
    task, changes = selection.with_task(start, f"npz:{tmp_path / 'mine.npz'}")
    assert task.startswith("npz:") and changes["user_tasks"] == [task] and changes["tasks"][-1] == task
    assert changes["n"] == 20, "n comes down to the choices the 30-point test split allows"
    again = selection.with_task({**start, **changes}, task)[1]
    assert again["user_tasks"] == [task] and again["tasks"].count(task) == 1, "adding it twice changes nothing"
    np.savez(tmp_path / "copy.npz", **arrays)
    with pytest.raises(ValueError, match="already a task here"):
        selection.with_task({**start, **changes}, f"npz:{tmp_path / 'copy.npz'}")


def test_added_eps_join_their_norms_grid_once_and_leave_it_together() -> None:
    start = {**selection.defaults(), "norm": "linf", "eps": default_eps("linf")}
    once = selection.with_eps(start, "linf", [3 / 255])
    assert once == {"extra_eps": {"linf": [eps_key(3 / 255)], "l2": []}, "eps": eps_key(3 / 255)}
    twice = selection.with_eps({**start, **once}, "linf", [5 / 255, 3 / 255])
    assert twice["extra_eps"]["linf"] == [eps_key(3 / 255), eps_key(5 / 255)] and twice["eps"] == eps_key(3 / 255)
    assert start["extra_eps"] == {n: [] for n in NORMS}, "the values given are left as they were"
    l2 = selection.with_eps(start, "l2", [0.3])
    assert l2 == {"extra_eps": {"linf": [], "l2": [0.3]}}, "another norm's grid: the linf cursor stays"
    gone = selection.without_added({**start, **twice, "eps": eps_key(5 / 255)}, "linf")
    assert gone == {"extra_eps": {"linf": [], "l2": []}, "eps": eps_grid("linf")[3]}, "5/255 -> 4/255"


def test_a_one_task_page_opens_on_the_sidebars_first_task() -> None:
    assert selection.preferred(["shapes", "glyphs"], ["mnist", "glyphs", "shapes"]) == "glyphs"
    assert selection.preferred(["shapes", "glyphs"], []) == "shapes"
