"""Exports that load and reproduce: plain CSVs with interval columns, and a script whose command, run on an
empty cache, writes the dashboard's per-sample CSV byte for byte (one real, tiny evaluation)."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import rtcore
import rtcore.cli
from app import state
from rtcore.export import csv_bytes
from rtcore.config import eps_key
from rtcore.models.ref import BackboneRef
from rtcore.models.uploads import load_ref
from rtcore.runs import EvalJob, Scheduler, selection
from rtcore.runs.reproduce import reproduce_script, script_commands, spec_download_name
from rtcore.runs.spec import parse_eps_text
from rtcore.tables import SHARES
from tests.app.conftest import image_folder

BACKBONE = "fmnist-cnn-standard"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvalJob, Path]:
    """A finished dashboard job: a built-in task and a folder of your own images (plus an unavailable task when
    MNIST is not here), an added eps."""
    if BACKBONE not in state.backbone_choices():
        pytest.skip(f"{BACKBONE} is not bundled here")
    tmp = tmp_path_factory.mktemp("exports")
    tasks = ["shapes", f"folder:{image_folder(tmp)}"]
    try:
        rtcore.create_task("mnist")
    except rtcore.TaskUnavailableError:
        tasks.append("mnist")  # offline: skipped with a warning, and left out of the exports
    ref = BackboneRef(BACKBONE)
    req = selection.request([ref], tasks, "linf", 20, "fast", extras=[0.05], cache_dir=str(tmp / "dashboard-cache"))
    job = Scheduler().run(EvalJob(req, {ref: load_ref(ref, device="cpu")}), timeout=600)
    snap = job.snapshot()
    assert snap.done and not snap.errors, snap.errors
    return job, tmp


def commands(script: str) -> list[list[str]]:
    return [shlex.split(line) for line in script.splitlines() if line.startswith('"$PYTHON" -m rtcore')]


def test_csvs_are_plain_with_interval_columns(finished: tuple[EvalJob, Path]) -> None:
    job, _ = finished
    summary, samples, parts = job.export()
    for df in (summary, samples):
        data = csv_bytes(df)
        assert not data.startswith(b"#") and b"\n#" not in data
        back = pd.read_csv(io.BytesIO(data))
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
    assert set(samples["task"]) == {"shapes", "weather"}, "only computed tasks (your folder by its name)"
    assert sorted(samples["eps"].unique()) == list(job.request.eps)
    assert {f"{s}_{e}" for s in SHARES for e in ("lo", "hi")} <= set(summary.columns), "a 95 % interval per share"
    assert (summary["robust_acc_lo"] <= summary["robust_acc"]).all() and (summary["bound"] <= summary["bound_hi"]).all()
    assert bool(summary["head_attack"].all()) and bool(summary["loss_attack"].all()), "final tables are complete"


def test_script_runs_with_the_dashboards_interpreter(finished: tuple[EvalJob, Path]) -> None:
    job, _ = finished
    script = reproduce_script(job.request.specs, job.export()[2])
    assert script.startswith("#!/usr/bin/env bash") and "bash rtcore-reproduce-" in script, "says how to run it"
    assert f'PYTHON="${{PYTHON:-{sys.executable}}}"' in script, "the interpreter that produced it, overridable"
    (argv,) = commands(script)  # the dashboard computed in stages; one command reproduces them
    listed = argv[argv.index("--tasks") + 1:argv.index("--eps")]
    assert listed == ["shapes", job.request.tasks[1]], "your folder by its reference; an unavailable task is not listed"
    assert listed[1].startswith("folder:/"), "an absolute path: the script runs from any folder"
    start = argv.index("--eps") + 1
    end = next(i for i in range(start, len(argv)) if argv[i].startswith("--"))
    assert [eps_key(parse_eps_text(e)) for e in argv[start:end]] == list(job.request.eps), "every eps, as k/255"
    assert "--samples-out" in argv and "--out" in argv


def test_the_script_reproduces_the_per_sample_csv_bit_for_bit(finished: tuple[EvalJob, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The script's command through ``rtcore.cli.main`` on a fresh cache (the dashboard computed in stages, the
    command in one run); only the features and the probes are copied over, to keep the test short."""
    job, tmp = finished
    fresh = tmp / "fresh-cache"
    for kind in ("features", "probe"):
        shutil.copytree(Path(job.request.cache_dir) / "results" / kind, fresh / "results" / kind)
    out = tmp / "cli"
    out.mkdir()
    monkeypatch.chdir(out)
    _, samples_dash, parts = job.export()
    for argv in commands(reproduce_script(job.request.specs, parts)):
        assert rtcore.cli.main(argv[3:] + ["--cache-dir", str(fresh)]) == 0, argv
    written = (out / spec_download_name(job.request.specs, "samples")).read_bytes()
    assert written == csv_bytes(samples_dash), "the CLI's per-sample CSV equals the dashboard's byte for byte"
    summary = pd.read_csv(out / spec_download_name(job.request.specs, "summary"))
    dash = pd.read_csv(io.BytesIO(csv_bytes(job.export()[0])))
    cols = [c for c in dash.columns if c != "seconds"]
    pd.testing.assert_frame_equal(summary[cols], dash[cols])


def test_the_downloaded_script_runs_outside_the_repository(finished: tuple[EvalJob, Path]) -> None:
    """bash FILE.sh in another folder, with the dashboard's cache: the interpreter finds rtcore; a cache hit."""
    job, tmp = finished
    folder = tmp / "elsewhere"
    folder.mkdir()
    script = folder / "reproduce.sh"
    script.write_text(reproduce_script(job.request.specs, job.export()[2]))
    env = {**os.environ, "RTCORE_CACHE_DIR": job.request.cache_dir, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", str(script)], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    written = (folder / spec_download_name(job.request.specs, "samples")).read_bytes()
    assert written == csv_bytes(job.export()[1])


def test_concatenating_the_parts_gives_the_dashboards_csv(tmp_path: Path) -> None:
    """With several specs the script writes one CSV per spec and concatenates them with head/tail, which must
    equal the dashboard's CSV of the concatenated tables."""
    import numpy as np

    rng = np.random.default_rng(0)
    parts = [pd.DataFrame({"task": "shapes", "probe": p, "eps": [0.0, 0.003921569], "rho": rng.normal(size=2),
                           "criterion_met": [True, False], "probe_radius": r}) for p, r in (("logistic", 0.0),
                                                                                          ("robust", 0.0837))]
    names = []
    for i, df in enumerate(parts):
        (tmp_path / f"part{i}.csv").write_bytes(csv_bytes(df))
        names.append(f"part{i}.csv")
    subprocess.run(["bash", "-c", f"{{ head -n 1 {names[0]}; tail -q -n +2 {' '.join(names)}; }} > all.csv"],
                   cwd=tmp_path, check=True)
    assert (tmp_path / "all.csv").read_bytes() == csv_bytes(pd.concat(parts, ignore_index=True))
    ref = BackboneRef(BACKBONE)
    req = selection.request([ref], ["shapes"], "linf", 20, "fast", probes=["logistic", "robust"])
    lines = script_commands([(s, ("shapes",)) for s in req.specs], "summary.csv", "samples.csv")
    assert len(lines) == 4 and lines[-1].endswith("> samples.csv") and "--probe robust" in lines[1]
