"""Every control of the dashboard against the library's rules: the eps the cursor, the grid and the add-form
offer pass :func:`rtcore.config.check_eps` (l2 1.6 included), and the norm, strength, probe, transfer-method and
task choices are the library's own lists. The controls are read from the running pages (AppTest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import rtcore
from app import state, ui
from rtcore.attacks import STRENGTHS
from rtcore.config import NORMS, check_eps, default_eps, eps_grid, eps_key, eps_text
from rtcore.probes import list_probes
from rtcore.runs import EvalSpec, selection
from rtcore.transfer import TRANSFER_METHODS
from tests.app.conftest import BACKBONE, use_small_defaults

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_small_defaults(monkeypatch, tmp_path / "cache")


def compare_page(**values: object) -> AppTest:
    """The compare page before its button: every sidebar control but the backbone, and no computation (no task
    chosen, so the landing page of the first run computes nothing either)."""
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in {"tasks": [], **values}.items():
        at.session_state[k] = v
    at.run()
    at.switch_page("pages/4_compare_backbones.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("norm", NORMS)
def test_the_eps_cursor_offers_exactly_the_librarys_grid(small: None, norm: str) -> None:
    at = compare_page()
    at.sidebar.radio(key="norm").set_value(norm).run()
    slider = at.sidebar.select_slider(key="eps")
    grid = eps_grid(norm)
    assert slider.options == [eps_text(e, norm) for e in grid], "every grid value the library accepts"
    for e in grid:
        assert check_eps(e, norm)[0] == (e,)
    if norm == "l2":
        assert "1.6" in slider.options, "l2 1.6 is on the grid (the library accepts l2 eps up to 100)"
    assert at.session_state["eps"] == default_eps(norm) in grid
    EvalSpec(backbone=BACKBONE, tasks=("shapes",), eps=selection.eps_options(norm, [selection.eps_from_input(3, norm)]),
             norm=norm)  # accepted


@pytest.mark.parametrize("norm", NORMS)
def test_the_add_form_accepts_exactly_what_the_library_accepts(norm: str) -> None:
    """Every value the number input allows: the form's verdict is an error exactly where check_eps refuses
    (or eps is 0), and whatever it adds builds a spec."""
    top = 255.0 if norm == "linf" else 100.0
    for typed in [*np.linspace(0.0, top, 257), top + 1, 1e9]:
        e = selection.eps_from_input(float(typed), norm)
        verdict, message = state.check_new_eps(e, norm)
        try:
            check_eps(e, norm)
            library_ok = e > 0
        except ValueError as err:
            library_ok = False
            assert str(err) in message, "the library's own words"
        assert (verdict != "error") == library_ok, (typed, verdict, message)
        if verdict in ("ok", "confirm"):
            EvalSpec(backbone=BACKBONE, tasks=("shapes",), eps=selection.eps_options(norm, [e]), norm=norm)
        if verdict == "grid":
            assert eps_key(e) in eps_grid(norm)


def test_choices_are_the_librarys_lists(small: None) -> None:
    at = compare_page()
    assert at.sidebar.radio(key="norm").options == [state.NORM_LABELS[n] for n in NORMS]
    assert at.sidebar.radio(key="attack").options == list(STRENGTHS)
    assert at.sidebar.multiselect(key="tasks").options == [state.task_label(t) for t in rtcore.list_tasks()]


def test_the_probe_page_asks_for_every_probe_kind(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, ...]] = []

    def record(refs, slot, tasks=None, probes=("logistic",), **kw):  # noqa: ANN001, ANN202
        seen.append(tuple(probes))
        return None

    monkeypatch.setattr(ui, "evaluate", record)
    monkeypatch.setattr(ui, "prestart", lambda: None)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/6_probes.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert seen[-1] == tuple(list_probes()), "the probe page evaluates every probe kind of the library"


def test_the_transfer_page_offers_the_librarys_methods(small: None) -> None:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["tasks"] = []  # the landing page of the first run computes nothing
    at.run()
    at.switch_page("pages/7_transfer.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="transfer_methods").options == list(TRANSFER_METHODS)
    assert at.sidebar.selectbox(key="backbone").options[:-1] == [
        state.backbone_label(n) for n in rtcore.list_backbones()], "every registry entry, then the upload option"
