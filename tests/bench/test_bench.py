"""Smoke test of bench/attacks.py (--quick on a tiny random model). The peers (torchattacks,
foolbox, pyautoattack) are not runtime dependencies: the test skips when they are not installed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import rtcore

pytest.importorskip("torchattacks")
pytest.importorskip("foolbox")
pytest.importorskip("pyautoattack")

ROOT = Path(__file__).resolve().parents[2]


def _load_bench() -> ModuleType:
    """bench/attacks.py as a module (it puts bench/ on sys.path for its sibling modules)."""
    spec = importlib.util.spec_from_file_location("rtcore_bench_attacks", ROOT / "bench" / "attacks.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # write nothing into the repo
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = keep
    return mod


def _load_harness() -> ModuleType:
    _load_bench()
    return importlib.import_module("harness")  # imported (from bench/) by bench/attacks.py


def test_bench_quick_runs_on_a_random_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _load_bench()
    rows = importlib.import_module("rows")  # imported (from bench/) by bench/attacks.py
    sections = importlib.import_module("sections")
    tiny = sections.random_backbone(torch.device("cpu"))
    model = rtcore.ProbedModel(tiny, rtcore.LinearHead(torch.randn(5, 32), torch.zeros(5))).eval()
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
    monkeypatch.setitem(rows.ROWS, "tiny", rows.Row("tiny", "random"))
    monkeypatch.setattr(rows, "load", lambda row, device, n=None: (model, x, y))
    out = tmp_path / "out"
    res = bench.main(["--quick", "--backbone", "random", "--threads", "1", "--out", str(out), "--rows", "tiny"])
    assert res.single and res.sweep and res.feature and res.tasks and res.flops and res.profile and res.targets
    single = res.single.contenders
    assert {"rtcore (same work)", "torchattacks.PGD", "foolbox LinfPGD", "AutoAttack APGD-CE",
            "rtcore, unfused: rtcore (same work)", "rtcore default ('standard')", "rtcore ('fast' preset)",
            "rtcore ('fast', same steps)"} <= set(single)
    assert "single eps, rtcore default: >= 3x both at equal or better strength" in res.targets
    assert "single eps 0.1: 'fast' >= 5x every PGD peer, as strong" in res.targets
    (row,) = res.rows
    assert row.n == 6 and {"rtcore ('fast', same steps)", "torchattacks.PGD", "foolbox LinfPGD"} <= set(row.contenders)
    assert "tiny, eps 2/255: 'fast' >= 5x every PGD peer, as strong" in res.targets
    for c in single.values():
        assert len(c.times) == 1 and c.median_s > 0
        assert 0.0 <= c.evals[0] <= 1.0  # robust accuracy recomputed from the returned images
    assert len(res.sweep.contenders["foolbox LinfPGD epsilons=[...]"].evals[0]) == 5
    assert len(res.sweep.contenders["AutoAttack APGD-CE loop"].evals[0]) == 5
    assert single["rtcore (same work)"].passes.grad_rows > 0, "passes of rtcore's fused copy are counted"
    assert res.fuse["used"] and res.fuse["folded"] == 3
    assert res.sanity and [f["name"] for f in res.sanity[0].flags] == [
        "monotone_large_eps", "noise_weaker", "more_steps", "gradient_free"]
    assert "single eps: unfused / fused time" in res.notes
    assert res.flops.model.fwd_bwd > res.flops.model.fwd > 0
    assert [r.K for r in res.tasks.rows] == [1, 2]
    assert {r.contender for r in res.table} >= set(single)
    data = json.loads((out / "results.json").read_text())
    assert data["machine"]["torch_threads"] == 1 and data["config"]["quick"] is True
    assert data["single"]["contenders"]["torchattacks.PGD"]["passes"]["grad_rows"] > 0
    assert data["tasks"]["rows"][0]["K"] == 1 and data["table"][0]["contender"] == "rtcore (same work)"
    md = (out / "results.md").read_text()
    assert "| section | contender |" in md and "torchattacks.PGD" in md
    assert "rtcore/attacks/pool.py" in md  # the line tracer times the PGD loop
    assert "Sanity flags" in md and "AutoAttack APGD-CE" in md and "fused copy" in md
    assert "| tiny | random | 6 | 2/255 | rtcore ('fast', same steps) |" in md


def test_check_ball_rejects_a_perturbation_outside_the_ball() -> None:
    harness = _load_harness()
    x = torch.full((2, 1, 4, 4), 0.5)
    assert harness.check_ball(x + 0.1, x, 0.1, "ok") <= 0.1 + 1e-6
    with pytest.raises(RuntimeError, match="leave"):
        harness.check_ball(x + 0.2, x, 0.1, "too far")
    with pytest.raises(RuntimeError, match="leave"):
        harness.check_ball(torch.full_like(x, 1.05), torch.full_like(x, 0.98), 0.1, "outside [0,1]")
