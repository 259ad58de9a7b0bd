"""A class on one server: assets/classroom.toml is exactly the landing page's default selection, a spec run by the
command line leaves nothing for the dashboard to compute, and a class of browsers opening a new server at once
(the README's flow, with small defaults) all converge: every page complete, nothing left "computing", no work
after the pages said so (scripts/classroom_load.py measures the same with the real defaults)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import rtcore.cli
from app import state
from rtcore.models.ref import BackboneRef
from rtcore.models.uploads import load_ref
from rtcore.runs import EvalJob, EvalRequest, Scheduler, load_spec, selection

ROOT = Path(__file__).resolve().parents[2]
ENV = (selection.ENV_N, selection.ENV_TASKS, selection.ENV_ATTACK, selection.ENV_BACKBONE, selection.ENV_NORM)
SESSIONS = 6


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def defaults() -> dict[str, object]:
    """The dashboard's defaults without the RTCORE_DASHBOARD_* overrides."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ENV:
            mp.delenv(var, raising=False)
        return state.session_defaults()


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> EvalRequest:
    """A cache the command line warmed with the small class's selection: the landing page's default backbone,
    norm and attack with the browser tests' small defaults (n = 20, task shapes)."""
    tmp = tmp_path_factory.mktemp("class")
    d = defaults()
    request = selection.request([BackboneRef(d["backbone"])], ["shapes"], d["norm"], 20, d["attack"],
                                cache_dir=str(tmp / "cache"))
    (tmp / "class.toml").write_text(request.specs[0].to_toml())
    assert rtcore.cli.main(["evaluate", "--spec", str(tmp / "class.toml"), "--cache-dir", request.cache_dir]) == 0
    return request


def test_the_classroom_spec_is_the_landing_pages_default() -> None:
    d = defaults()
    request = selection.request([BackboneRef(d["backbone"])], d["tasks"], d["norm"], d["n"], d["attack"])
    spec = load_spec(ROOT / "assets" / "classroom.toml")
    assert request.specs == (spec,), "edit assets/classroom.toml to the dashboard's defaults"
    assert spec.digest() == request.specs[0].digest()


def test_a_spec_run_by_the_command_line_warms_the_dashboard(warm: EvalRequest) -> None:
    """The same spec through `python -m rtcore evaluate --spec` and then the dashboard: nothing left to compute."""
    ref = warm.specs[0].backbone
    job = Scheduler().run(EvalJob(warm, {ref: load_ref(ref, device="cpu")}), timeout=300)
    now = job.state()
    assert now.phase == "done" and now.computed == 0, "every unit read from the warm cache"


def test_a_class_of_browsers_on_a_new_server_converges(warm: EvalRequest) -> None:
    """Every session joins the one job while it runs: each page completes and converges, and the server computes
    nothing once they said complete."""
    ttfp = _script("time_to_first_plot")
    exe = ttfp.find_chromium()
    if exe is None or importlib.util.find_spec("playwright") is None:
        pytest.skip("Chromium or Playwright is missing (scripts/install_browser.sh, requirements-browser.txt)")
    load = _script("classroom_load")
    d = defaults()
    env = {**ttfp.SMALL_ENV, "RTCORE_CACHE_DIR": warm.cache_dir, selection.ENV_BACKBONE: str(d["backbone"]),
           selection.ENV_NORM: str(d["norm"]), selection.ENV_ATTACK: str(d["attack"])}
    with ttfp.streamlit_server(env) as url:
        phase = asyncio.run(load.phase("class", url, exe, SESSIONS, 240))
    assert [s.error for s in phase.sessions] == [None] * SESSIONS
    assert all(s.complete is not None and s.converged for s in phase.sessions), "every page converged"
    assert phase.quiet_cpu_s < 1.0, f"the server computed {phase.quiet_cpu_s:.2f} s after the pages said complete"
