"""The Streamlit dashboard in AppTest: every page runs, the eps cursor re-plots without a new job, an eps off the
grid is an explicit action, each page shows only its controls, the theory page's examples show what their
labels say, the interaction defects of the classroom test stay fixed, and bad input gives messages.

Small on purpose (n=20, one task, the fast attack, a private cache): the first evaluation warms the cache for the
rest of the file.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import rtcore
import rtcore.models.uploads
from app import jobs, state, view
from app.texts import texts
from rtcore.config import default_eps, eps_grid, eps_text
from rtcore.models.registry import list_backbones
from rtcore.probes import list_probes
from rtcore.theory import linear_toy
from rtcore.models.ref import BackboneRef
from rtcore.runs import fmt_seconds, selection

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 300


def new_app(**values: object) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in {"n": 20, "tasks": ["shapes"], "attack": "fast", **values}.items():
        at.session_state[k] = v
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    return [f["layout"].get("title", {}).get("text", "") for f in charts(at)]


def text(at: AppTest) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def sidebar_keys(at: AppTest) -> set[str]:
    return {w.key for kind in ("selectbox", "radio", "select_slider", "multiselect") for w in at.sidebar.get(kind)} \
        - set(view.VIEW_KEYS)  # the view box (presenter, freeze, share, chart format) is on every page


def no_none(at: AppTest) -> None:
    for df in at.table:
        cells = df.value.astype(str).to_numpy().ravel().tolist()
        assert not {"None", "nan", "NaN", "<NA>"} & set(cells), df.value


# ---------------------------------------------------------------- landing page and the eps cursor

def test_the_landing_page_starts_its_evaluation_once_before_the_sidebar(small: None,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """app.py starts the selection's job before the sidebar draws (a warm cache is read meanwhile); the page then
    attaches to that same job: one job, whose request is the page's."""
    from rtcore.runs import Scheduler

    from app import sidebar

    monkeypatch.setattr(jobs, "SCHEDULER", Scheduler())
    order: list[object] = []
    monkeypatch.setattr(jobs, "submit", lambda request, loaded, slot, submit=jobs.submit: order.append(
        (request.key, slot)) or submit(request, loaded, slot))
    monkeypatch.setattr(sidebar, "sidebar", lambda *a, draw=sidebar.sidebar: order.append("sidebar") or draw(*a))
    at = new_app().run()
    assert_clean(at)
    asked = [o for o in order if o != "sidebar"]
    assert order.index("sidebar") > order.index(asked[0]), "the job starts before the sidebar draws"
    assert jobs.SCHEDULER.created == 1 and len(set(asked)) == 1 and asked[0][1] == "main", order
    assert "All results ready" in " ".join(c.value for c in at.caption)


def test_landing_draws_its_charts_with_intervals(small: None) -> None:
    at = new_app().run()
    assert_clean(at)
    figs = charts(at)
    assert len(figs) == 3, "bars at eps, curves across eps, calibration scatter"
    calib = next(f for f in figs if "Calibration" in f["layout"]["title"]["text"])
    assert calib["data"][0]["x"] == [0, 1] and calib["data"][0]["y"] == [0, 1], "the diagonal"
    curves = next(f for f in figs if "across ε" in f["layout"]["title"]["text"])
    assert any(t.get("line", {}).get("dash") == "dot" for t in curves["data"]), "bound (head subspace) is drawn"
    assert all("error_y" in t for t in figs[0]["data"] if t["type"] == "bar"), "bars carry 95 % intervals"
    table = at.table[0].value
    assert list(table["task"]) == ["shapes"] and "[" in table["robust (attack)"].iloc[0], "value [lo, hi]"
    no_none(at)
    assert "not a certificate" in text(at) and "Reading the curves" in text(at) and "95 %" in text(at)
    assert "by construction" not in text(at) and "at most the robust accuracy" in text(at), \
        "the calibration's text says what the chart measures, and students read why the bound sits below"
    assert not at.main.code, "the script's code block (and its highlighter) only on demand"
    at.toggle(key="landing_show_script").set_value(True).run()
    script = at.main.code[0].value
    assert script.startswith("#!/usr/bin/env bash") and '"$PYTHON" -m rtcore evaluate' in script
    assert "bash rtcore-reproduce-" in script, "the script says how to run it"


def test_default_eps_is_an_exact_grid_value(small: None) -> None:
    at = new_app().run()
    slider = at.sidebar.select_slider(key="eps")
    assert slider.value == eps_grid("linf")[3] and slider.options == ["0", "1/255", "2/255", "4/255", "8/255", "16/255"]
    assert "4/255 = 0.0157" in " ".join(c.value for c in at.sidebar.caption)
    assert "4/255" in titles(at)[0]


def test_moving_eps_replots_without_a_new_job(small: None) -> None:
    at = new_app().run()
    assert_clean(at)
    job_line = next(c.value for c in at.caption if "All results ready" in c.value)
    created = jobs.SCHEDULER.created
    times, grid = [], eps_grid("linf")
    for e in (grid[4], grid[2], grid[5], grid[1], grid[4], grid[3]):
        t0 = time.perf_counter()
        at.sidebar.select_slider(key="eps").set_value(e).run()
        times.append(time.perf_counter() - t0)
        assert_clean(at)
        assert eps_text(e, "linf") in titles(at)[0], "the bars follow the cursor"
        assert not at.get("progress"), "no progress bar: nothing is computed"
    assert jobs.SCHEDULER.created == created, "moving the cursor started no job"
    assert next(c.value for c in at.caption if "All results ready" in c.value) == job_line, "the same job"
    median = statistics.median(times)
    print(f"\nserver-side re-plot after an eps move (AppTest, warm cache): median {median:.3f} s, max {max(times):.3f} s")
    assert median < 0.5, f"re-plot took {median:.2f} s (target 0.5 s)"


def test_adding_an_eps_keeps_the_curves_and_then_says_it_is_done(small: None) -> None:
    at = new_app().run()
    at.sidebar.number_input(key="eps_new_linf").set_value(3.0).run()
    at.sidebar.button(key="eps_add").click().run()
    assert_clean(at)
    e = selection.eps_from_input(3.0, "linf")
    assert at.session_state["extra_eps"]["linf"] == [e] and at.session_state["eps"] == e
    assert "3/255" in at.sidebar.select_slider(key="eps").options
    assert any("Computing ε = 3/255" in t.value for t in at.toast), "a passing note, not a lasting message"
    curves = next(f for f in charts(at) if "across ε" in f["layout"]["title"]["text"])
    assert curves["layout"]["xaxis"]["ticktext"] == ["0", "1", "2", "3", "4", "8", "16"], "3/255 in its place"
    assert "All results ready" in text(at), "the run returns once the job has finished"
    everything = text(at) + " ".join(w.value for w in [*at.sidebar.info, *at.sidebar.caption])
    assert "Computing" not in everything, "nothing says it is still computing once it is done"
    at.sidebar.button(key="eps_clear").click().run()
    assert at.session_state["extra_eps"]["linf"] == [] and at.session_state["eps"] in eps_grid("linf")


def test_an_eps_beyond_32_steps_asks_first_and_cancel_keeps_the_form(small: None) -> None:
    at = new_app().run()
    created = jobs.SCHEDULER.created
    at.sidebar.number_input(key="eps_new_linf").set_value(40.0).run()
    at.sidebar.button(key="eps_add").click().run()
    assert_clean(at)
    warning = next(w.value for w in at.sidebar.warning)
    assert "beyond 32/255" in warning and "every probe is broken" not in warning
    assert [at.sidebar.button(key=k).label for k in ("eps_confirm_yes", "eps_confirm_no")] == ["Compute", "Cancel"]
    assert at.session_state["extra_eps"]["linf"] == [] and jobs.SCHEDULER.created == created
    at.sidebar.button(key="eps_confirm_no").click().run()
    assert not at.sidebar.warning and at.session_state["extra_eps"]["linf"] == []
    assert at.sidebar.expander[0].proto.expanded is True, "Cancel keeps the form open"
    at.sidebar.number_input(key="eps_new_linf").set_value(8.0).run()
    at.sidebar.button(key="eps_add").click().run()
    assert at.session_state["eps"] == eps_grid("linf")[4], "a grid value moves the cursor"
    message = " ".join(i.value for i in at.sidebar.info)
    assert "the cursor is there now" in message and "move the slider" not in message


def test_no_task_is_a_warning(small: None) -> None:
    at = new_app(tasks=[]).run()
    assert not at.exception and any("task" in w.value for w in at.warning)


def test_changing_norm_moves_eps_to_the_norms_default(small: None) -> None:
    at = new_app(tasks=[]).run()  # the sidebar only: nothing to compute
    at.sidebar.radio(key="norm").set_value("l2").run()
    assert_clean(at)
    assert at.session_state["eps"] == default_eps("l2") == 0.4
    assert at.sidebar.select_slider(key="eps").options == ["0", "0.1", "0.2", "0.4", "0.8", "1.6"]


# ---------------------------------------------------------------- the other pages

@pytest.mark.parametrize("page", ["pages/2_representation.py", "pages/3_loss_bound.py", "pages/5_theory.py"])
def test_page_runs(small: None, page: str) -> None:
    at = new_app().run()
    at.switch_page(page).run()
    assert_clean(at)
    assert charts(at), f"{page} draws at least one chart"
    no_none(at)


def test_representation_page_draws_heavy_charts_on_demand(small: None) -> None:
    at = new_app().run()
    at.switch_page("pages/2_representation.py").run()
    assert len(charts(at)) == 3, "two curves and the margin scatter; the box plot and the gallery wait"
    at.toggle(key="rep_show_box").set_value(True).run()
    at.toggle(key="rep_show_gallery").set_value(True).run()
    assert_clean(at)
    shown = " | ".join(titles(at))
    assert len(charts(at)) == 5 and "Distribution of Δ(x)" in shown and "gallery" in shown


def test_loss_page_shows_both_bounds(small: None) -> None:
    at = new_app().run()
    at.switch_page("pages/3_loss_bound.py").run()
    assert_clean(at)
    bars = next(f for f in charts(at) if "Mean loss" in f["layout"]["title"]["text"])
    assert [t["name"] for t in bars["data"] if t["type"] == "bar"] == ["clean loss", "adversarial loss (attack)", "bound (ii): log-sum-exp",
                                                 "bound (i): max spread × Δ"]
    table = at.table[0].value.set_index("task").astype(float)  # the loss table: numbers as text
    assert (table["adversarial loss (attack)"] <= table["bound (ii): log-sum-exp"] * (1 + 1e-3)).all()
    assert (table["bound (ii): log-sum-exp"] <= table["bound (i): max spread × Δ"] * (1 + 1e-3)).all()


def test_probe_tradeoff_page(small: None) -> None:
    at = new_app().run()
    at.switch_page("pages/6_probes.py").run()
    assert_clean(at)
    fig = next(f for f in charts(at) if "Δ-aware" in f["layout"]["title"]["text"])
    assert {t["legendgroup"] for t in fig["data"]} == set(list_probes())
    assert all("error_y" in t for t in fig["data"]), "intervals on the probe page"
    table = at.table[0].value
    assert list(table["probe"]) == list_probes()
    assert "robust head changes the bound" in text(at) and "interval" in text(at)
    no_none(at)


def test_each_page_shows_only_its_controls(small: None) -> None:
    at = new_app().run()
    assert sidebar_keys(at) >= {"backbone", "norm", "eps", "tasks", "n", "attack"}
    at.switch_page("pages/5_theory.py").run()
    assert sidebar_keys(at) == set(), "the theory page needs none of the sidebar's controls"
    at.switch_page("pages/4_compare_backbones.py").run()
    assert "backbone" not in sidebar_keys(at) and {"eps", "tasks"} <= sidebar_keys(at)
    at.switch_page("pages/6_probes.py").run()
    assert "tasks" not in sidebar_keys(at) and {"backbone", "eps"} <= sidebar_keys(at)
    at.switch_page("pages/1_bound_vs_empirical.py").run()
    assert at.session_state["tasks"] == ["shapes"] and at.session_state["n"] == 20, "values survive other pages"


def test_compare_page_button_estimate_and_overlaps(small: None) -> None:
    at = new_app(compare_backbones=list_backbones(kind="bundled")[:2]).run()
    at.switch_page("pages/4_compare_backbones.py").run()
    assert_clean(at)
    assert not charts(at), "nothing heavy runs before the user asks"
    button = at.button(key="compare_run")
    assert "(2 backbones × 1 task," in button.label and not button.disabled
    assert "Takes up to about" in text(at) and "measured on this server" in text(at), "an estimate from throughput"
    refs = [BackboneRef(b) for b in list_backbones(kind="bundled")[:2]]
    left = jobs.SCHEDULER.clock.left(selection.request(refs, ["shapes"], "linf", 20, "fast").workload())
    assert f"up to about {fmt_seconds(left)}" in text(at), "one cost: the scheduler's estimate, as in the progress bar"
    cards = at.table[0].value
    assert len(cards) == 2 and not (cards.astype(str) == "None").any().any(), "the model cards, whole"
    at.button(key="compare_run").click().run()
    assert_clean(at)
    figs = charts(at)
    assert "Robust accuracy (left) and bound (right)" in figs[0]["layout"]["title"]["text"]
    assert "Is the best really better?" in text(at) and "told apart" in text(at), "overlapping intervals named"
    no_none(at)


def test_compare_button_says_why_it_is_disabled(small: None) -> None:
    at = new_app(tasks=[], compare_backbones=list_backbones(kind="bundled")[:2]).run()
    at.switch_page("pages/4_compare_backbones.py").run()
    button = at.button(key="compare_run")
    assert button.disabled and "2 backbones × 0 tasks" in button.label
    assert "choose at least one task" in text(at)


# ---------------------------------------------------------------- theory page

def test_toy_examples_show_what_their_labels_say(small: None) -> None:
    at = new_app().run()
    at.switch_page("pages/5_theory.py").run()
    for i, ex in enumerate(texts("theory")["examples"]):  # the page's examples (assets/text/theory.toml)
        tm = linear_toy(**ex["values"])
        assert (tm.certified, tm.robust) == (ex["certified"], ex["robust"]), ex["label"]
        if "loose" in ex["label"]:
            assert not tm.certified and tm.robust
        if "broken" in ex["label"]:
            assert tm.correct and not tm.robust
        if "exact" in ex["label"]:
            assert tm.certified == tm.robust and tm.delta == pytest.approx(tm.required)
        if "contracting" in ex["label"]:
            assert tm.certified and np.linalg.svd(tm.A, compute_uv=False)[0] < 1
        at.button(key=f"toy_example_{i}").click().run()
        assert_clean(at)
        shown = {m.label: m.value for m in at.metric}
        assert shown["criterion ρ > Δ"] == ("certified" if ex["certified"] else "not certified"), ex["label"]
        assert shown["exact end-to-end"] == ("robust" if ex["robust"] else "broken"), ex["label"]
        assert ex["lesson"] in text(at)


# ---------------------------------------------------------------- messages instead of tracebacks

def test_offline_timm_backbone_is_a_message(small: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(rtcore.models.uploads, "hub_reachable", lambda *a, **k: False)
    at = new_app(backbone="timm:resnet18.a1_in1k").run()
    assert not at.exception and at.error and "not available" in at.error[0].value


def test_task_needing_download_is_a_warning(small: None) -> None:
    try:
        rtcore.create_task("mnist")
        pytest.skip("MNIST is on this machine, so it needs no download here")
    except rtcore.TaskUnavailableError:
        pass
    at = new_app(tasks=["shapes", "mnist"]).run()
    assert not at.exception
    assert any("mnist" in w.value for w in at.warning)
    assert charts(at), "the available task is still drawn"
    at.toggle(key="landing_show_script").set_value(True).run()
    commands = [line for line in at.main.code[0].value.splitlines() if "-m rtcore" in line]
    assert commands and all("--tasks shapes --eps" in c for c in commands), "only computed tasks are listed"


def test_upload_without_file_is_an_info(small: None) -> None:
    at = new_app(backbone=state.UPLOAD_CHOICE).run()
    assert not at.exception and any("Upload" in i.value for i in at.info)
