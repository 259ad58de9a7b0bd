"""The view in the URL, presenter mode, freezing, the share box and the guided lesson (app/view.py, app/lesson.py):
a URL reopens its view, the default page writes its selection, bad values are named and fall back, presenter mode
draws every chart's text at 18 px or more, and the lesson's warm-up specs are exactly what its steps compute."""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from app import lesson, nav, state, ui, view
from rtcore.config import eps_grid
from rtcore.models.ref import BackboneRef
from rtcore.probes import list_probes
from rtcore.runs import load_spec, selection
from tests.app.test_figures import fonts

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
ISSUE_URL = {"backbone": "fmnist-cnn-standard", "norm": "linf", "eps": "8/255", "tasks": "fmnist-novel,shapes",
             "n": "200", "attack": "fast"}


def no_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages stop before computing (nor is the landing page's evaluation started early): these tests look at the
    selection only."""
    monkeypatch.setattr(ui, "evaluate", lambda *a, **k: None)
    monkeypatch.setattr(ui, "prestart", lambda: None)


def opened(params: dict[str, str], page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_decode_the_issues_url() -> None:
    values, problems = selection.from_query(ISSUE_URL)
    assert not problems
    assert values == {"backbone": "fmnist-cnn-standard", "norm": "linf", "eps": eps_grid("linf")[4],
                      "tasks": ["fmnist-novel", "shapes"], "n": 200, "attack": "fast", "extra_eps": {}}
    assert selection.to_query({**state.session_defaults(), **values}) == {**ISSUE_URL, "probe": "logistic"}, \
        "round trip"


@pytest.mark.parametrize("params, named", [
    ({"backbone": "resnet9000"}, "backbone='resnet9000'"), ({"norm": "l3"}, "norm='l3'"),
    ({"eps": "eight"}, "eps='eight'"), ({"eps": "200/255"}, "eps='200/255'"), ({"eps": "1/0"}, "eps='1/0'"),
    ({"n": "-5"}, "n='-5'"), ({"attack": "mighty"}, "attack='mighty'"), ({"probe": "svm"}, "probe='svm'"),
    ({"tasks": "shapes,nope"}, "'nope' not known here, left out"), ({"lesson": "x"}, "lesson='x'")])
def test_a_bad_value_is_named_and_keeps_its_default(params: dict[str, str], named: str) -> None:
    values, problems = selection.from_query(params)
    assert len(problems) == 1 and named in problems[0], problems
    key = next(iter(params))
    assert key not in values or values.get("tasks") == ["shapes"], "the default stays (or the valid part of a list)"


def test_an_eps_off_the_grid_is_added_like_the_add_form_would() -> None:
    values, problems = selection.from_query({"norm": "linf", "eps": "3/255"})
    assert not problems and values["eps"] == pytest.approx(3 / 255) and values["extra_eps"] == {"linf": [values["eps"]]}
    values, _ = selection.from_query({"norm": "l2", "eps": "0.4"})
    assert values["eps"] == 0.4 and values["extra_eps"] == {}, "l2 grid value"


def test_the_landing_page_answers_the_issues_url(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    no_evaluation(monkeypatch)
    at = opened(ISSUE_URL)
    s = at.session_state
    assert (s["backbone"], s["norm"], s["eps"], s["tasks"], s["n"], s["attack"]) == (
        "fmnist-cnn-standard", "linf", eps_grid("linf")[4], ["fmnist-novel", "shapes"], 200, "fast")
    assert at.sidebar.select_slider(key="eps").value == eps_grid("linf")[4], "the sidebar shows the link's view"
    assert {k: at.query_params[k][0] if isinstance(at.query_params[k], list) else at.query_params[k]
            for k in ISSUE_URL} == ISSUE_URL, "and the URL still holds it"


def test_the_default_page_writes_its_selection_and_changes_follow(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    no_evaluation(monkeypatch)
    at = opened({})
    written = {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()}
    assert written == selection.to_query(at.session_state), written
    assert written["eps"] == "4/255" and written["tasks"] == "shapes" and written["n"] == "20"
    at.sidebar.select_slider(key="eps").set_value(eps_grid("linf")[5]).run()
    assert at.query_params["eps"] in ("16/255", ["16/255"]), "written whenever it changes"


def test_a_bad_link_is_a_message_not_a_crash(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    no_evaluation(monkeypatch)
    at = opened({"backbone": "nope", "eps": "huge", "n": "7", "tasks": "shapes"})
    shown = " ".join(w.value for w in at.warning)
    assert "backbone='nope'" in shown and "eps='huge'" in shown and "n='7'" in shown
    assert at.session_state["backbone"] == selection.default_backbone()
    assert at.session_state["n"] == selection.default_n()
    at.run()
    assert any("backbone='nope'" in w.value for w in at.warning), "still said on the next run of the same view"


def test_frozen_view_locks_the_controls(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    no_evaluation(monkeypatch)
    at = opened({"frozen": "1"})
    assert at.sidebar.selectbox(key="backbone").disabled
    assert at.sidebar.select_slider(key="eps").disabled and at.sidebar.multiselect(key="tasks").disabled
    assert not at.sidebar.toggle(key="frozen").disabled, "the teacher (or a student) can unfreeze"
    assert at.query_params["frozen"] in ("1", ["1"])
    at.sidebar.toggle(key="frozen").set_value(False).run()
    assert not at.sidebar.select_slider(key="eps").disabled and "frozen" not in at.query_params


def test_share_box_gives_a_reachable_url_and_a_qr_code(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    no_evaluation(monkeypatch)
    at = opened({"eps": "8/255"})
    url = next(c.value for c in at.sidebar.code if "eps=8/255" in c.value)
    assert "localhost" not in url and "127.0.0.1" not in url, "students cannot open the teacher's localhost"
    png = view.qr_png(url)
    assert png.startswith(b"\x89PNG") and len(png) > 500


def test_presenter_mode_draws_every_chart_at_18_px_or_more(small: None) -> None:
    at = opened({"present": "1"})
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(figs) == 3 and not at.error
    for fig in figs:
        assert min(fonts(go.Figure(fig))) >= 18, fig["layout"]["title"]["text"]
    captions = " ".join(c.value for c in at.caption)
    assert "Reading the curves" not in captions, "short captions in presenter mode"
    at.sidebar.toggle(key="present").set_value(False).run()
    assert min(fonts(go.Figure(json.loads(at.get("plotly_chart")[0].proto.spec)))) < 18


def test_charts_download_as_png_or_svg(small: None) -> None:
    at = opened({})
    config = json.loads(at.get("plotly_chart")[0].proto.config)
    assert config["toImageButtonOptions"]["format"] == "png" and config["toImageButtonOptions"]["scale"] == 2
    at.sidebar.radio(key="chart_format").set_value("svg").run()
    config = json.loads(at.get("plotly_chart")[0].proto.config)
    assert config["toImageButtonOptions"] == {"format": "svg", "filename": "rtcore-landing_bars", "scale": 1}


# ---------------------------------------------------------------- the lesson

def test_the_lesson_takes_20_minutes_and_asks_at_every_step() -> None:
    assert sum(s.minutes for s in lesson.STEPS) == 20
    assert all(len(s.questions) >= 2 for s in lesson.STEPS)
    pages = [s.page for s in lesson.STEPS]
    assert pages == ["classroom", "bound", "compare", "tradeoff", "bound"], "theory, landing, compare, probes, own data"
    assert lesson.step_params(1)["eps"] == "4/255" and lesson.step_params(2)["compare"] == \
        "fmnist-cnn-pgd-linf-0.1,fmnist-cnn-standard", "robust vs standard pretraining"


def test_the_warm_up_covers_every_page_the_lesson_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lesson's requests with the real defaults are exactly assets/classroom.toml and assets/lesson/*.toml."""
    for var in (selection.ENV_N, selection.ENV_TASKS, selection.ENV_ATTACK, selection.ENV_BACKBONE, selection.ENV_NORM):
        monkeypatch.delenv(var, raising=False)
    d = state.session_defaults()
    wanted = set()
    for k, step in enumerate(lesson.STEPS):
        values, problems = selection.from_query(lesson.step_params(k))
        assert not problems
        v = {**d, **values}
        if step.page == "compare":
            refs, probes, tasks = v["compare_backbones"], ("logistic",), v["tasks"]
        elif step.page == "tradeoff":
            refs, probes, tasks = [v["backbone"]], list_probes(), v["tasks"][:1]
        elif step.page == "bound":
            refs, probes, tasks = [v["backbone"]], (v["probe"],), v["tasks"]
        else:
            continue
        request = selection.request([BackboneRef(r) for r in refs], tasks, v["norm"], v["n"], v["attack"],
                                    probes=probes)
        wanted |= {(s.backbone.name, s.probe, t) for s in request.specs for t in s.tasks}
    files = [ROOT / "assets" / "classroom.toml", *sorted((ROOT / "assets" / "lesson").glob("*.toml"))]
    warmed = {(s.backbone.name, s.probe, t) for s in map(load_spec, files) for t in s.tasks}
    assert wanted == warmed
    assert all(s.n == d["n"] and s.attack == d["attack"] for s in map(load_spec, files))
    assert "assets/lesson/*.toml" in lesson.WARM_UP


def test_the_lesson_banner_follows_the_steps(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    no_evaluation(monkeypatch)
    at = opened({})
    at.switch_page("pages/9_lesson.py").run()
    assert not at.exception and "at most the robust accuracy" in " ".join(m.value for m in at.markdown)
    for k, step in enumerate(lesson.STEPS):
        at.query_params.clear()
        at.query_params.update(lesson.step_params(k))
        at.switch_page(next(p.path for p in nav.PAGES if p.url_path == step.page)).run()
        assert not at.exception, (step.title, [e.value for e in at.exception])
        text = " ".join(m.value for m in at.markdown)
        assert f"step {k + 1} of {len(lesson.STEPS)}" in text and step.questions[0] in text, step.title
    assert at.session_state["compare_active"] is True, "the compare step runs its comparison"
    at.button(key="lesson_end").click().run()
    assert "step 5 of" not in " ".join(m.value for m in at.markdown) and "lesson" not in at.query_params
