"""Warming the cache for a class: assets/classroom.toml is exactly the landing page's default selection, and a
spec run by the command line leaves nothing for the dashboard to compute."""

from __future__ import annotations

from pathlib import Path

import pytest

import rtcore.cli
from app import backbones as bb
from app import jobs, state
from rtcore.models.ref import BackboneRef
from rtcore.runs import EvalJob, Scheduler, load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_the_classroom_spec_is_the_landing_pages_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (state.ENV_N, state.ENV_TASKS, state.ENV_ATTACK, state.ENV_BACKBONE, state.ENV_NORM):
        monkeypatch.delenv(var, raising=False)
    d = state.session_defaults()
    request = jobs.make_request([BackboneRef(d["backbone"])], d["tasks"], d["norm"], d["n"], d["attack"])
    spec = load_spec(ROOT / "assets" / "classroom.toml")
    assert request.specs == (spec,), "edit assets/classroom.toml to the dashboard's defaults"
    assert spec.digest() == request.specs[0].digest()


def test_a_spec_run_by_the_command_line_warms_the_dashboard(tmp_path: Path) -> None:
    """The same spec through `python -m rtcore evaluate --spec` and then the dashboard: nothing left to compute."""
    ref = BackboneRef("fmnist-cnn-standard")
    request = jobs.make_request([ref], ["shapes"], "linf", 20, "fast", cache_dir=str(tmp_path / "cache"))
    (tmp_path / "class.toml").write_text(request.specs[0].to_toml())
    assert rtcore.cli.main(["evaluate", "--spec", str(tmp_path / "class.toml"), "--cache-dir",
                            str(tmp_path / "cache")]) == 0
    job = Scheduler().run(EvalJob(request, {ref: bb.load_backbone(ref, device="cpu")}), timeout=300)
    now = job.state()
    assert now.phase == "done" and now.computed == 0, "every unit read from the warm cache"
