"""The estimate before a run: counted image-steps follow the spec, --dry-run computes nothing and prints one JSON
object, and on the bundled CNN the estimate is within 3x of the measured time of the same run.

The run's time is its process CPU time: the run computes on one thread, so on an idle machine that is its wall
time, and unlike the wall time it does not grow with whatever else the machine runs (the suite's other worker)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rtcore.attacks import create_strength
from rtcore.cli import main
from rtcore.runs import EvalSpec, plan
from rtcore.runs.estimate import FORWARD, e2e_steps, unit_steps

ARGS = ["--backbone", "fmnist-cnn-pgd-linf-0.1", "--tasks", "fmnist-seen", "shapes", "--eps", "2/255", "8/255",
        "--n", "48", "--attack", "fast"]


def test_image_steps_follow_the_spec() -> None:
    spec = EvalSpec(backbone="fmnist-cnn-standard", tasks=("shapes",), eps=(0.0, 2 / 255, 8 / 255), n=40,
                    attack="fast")
    cfg = create_strength("fast")
    fit, attack, head_loss = plan(spec)
    per_point = cfg.feature_restarts * (cfg.steps + 1) + e2e_steps(cfg)
    assert attack.eps == (spec.eps[1], spec.eps[2]) and unit_steps(attack, 40, 3000, cfg) == 2 * 40 * per_point
    assert fit.eps == (0.0,) and unit_steps(fit, 40, 3000, cfg) == (3000 + 40) * FORWARD  # eps 0: no attack
    assert unit_steps(attack, 80, 3000, cfg) == 2 * unit_steps(attack, 40, 3000, cfg)
    assert unit_steps(head_loss, 40, 3000, cfg) > 0
    robust = spec.with_(probe="robust")
    assert unit_steps(plan(robust)[0], 40, 3000, cfg) > unit_steps(fit, 40, 3000, cfg)  # the radius attack
    tuned = spec.with_(transfer="ft", finetune={"epochs": 2})
    assert unit_steps(plan(tuned)[0], 40, 3000, cfg) >= 2 * 3000  # two passes over the training split
    assert min(e2e_steps(create_strength("strong")), e2e_steps(create_strength("standard"))) > e2e_steps(cfg)


def test_dry_run_computes_nothing_and_the_estimate_is_within_3x(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    assert main(["evaluate", *ARGS, "--cache-dir", str(cache), "--dry-run"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert set(est) == {"units", "image_steps", "seconds_per_step", "estimated_seconds", "device", "skipped"}
    assert est["units"] == 6 and est["skipped"] == [] and est["image_steps"] > 0 and est["device"] == "cpu"
    assert not (cache / "results").exists()  # nothing was computed or stored
    t0 = time.process_time()
    assert main(["evaluate", *ARGS, "--cache-dir", str(cache), "--out", str(tmp_path / "r.csv")]) == 0
    spent = time.process_time() - t0
    assert "plan: 6 units" in capsys.readouterr().err
    assert spent / 3 <= est["estimated_seconds"] <= 3 * spent, (est["estimated_seconds"], spent)


def test_a_sweep_dry_run_counts_its_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "zoo.toml"
    path.write_text('backbones = ["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"]\ntasks = ["shapes"]\n'
                    'eps = ["2/255"]\nn = 16\nattack = "fast"\n')
    assert main(["sweep", str(path), "--cache-dir", str(tmp_path / "c"), "--dry-run"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["units"] == 2 and est["estimated_seconds"] > 0
    assert main(["sweep", str(path), "--cache-dir", str(tmp_path / "c"), "--max-units", "1"]) == 2
    assert "above the cap of 1" in capsys.readouterr().err
