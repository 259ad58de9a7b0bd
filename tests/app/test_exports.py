"""Exports that load and reproduce: plain CSVs, and a script whose commands, run on an empty cache,
write the dashboard's per-sample CSV byte for byte (one real, tiny evaluation)."""

from __future__ import annotations

import io
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest

import rtcore
import rtcore.cli
from app import backbones as bb
from app import exports, jobs, state
from app.plan import make_request

BACKBONE = "fmnist-cnn-standard"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[jobs.EvaluationJob, Path]:
    """A finished dashboard job: one task (plus an unavailable one when MNIST is not here), an added eps."""
    if BACKBONE not in state.backbone_choices():
        pytest.skip(f"{BACKBONE} is not bundled here")
    tmp = tmp_path_factory.mktemp("exports")
    tasks = ["shapes"]
    try:
        rtcore.load_task("mnist")
    except rtcore.TaskUnavailableError:
        tasks.append("mnist")  # offline: skipped with a warning, and left out of the exports
    ref = bb.BackboneRef(BACKBONE)
    req = make_request([ref], tasks, "linf", 20, "fast", extras=[0.05], cache_dir=tmp / "dashboard-cache")
    job = jobs.EvaluationJob(req, {ref: bb.load_backbone(ref, device="cpu")}).start()
    job.join(600)
    snap = job.snapshot()
    assert snap.done and not snap.errors, snap.errors
    return job, tmp


def test_csvs_are_plain(finished: tuple[jobs.EvaluationJob, Path]) -> None:
    job, _ = finished
    tables = exports.export_tables(job)
    assert tables is not None
    summary, samples = tables
    for df in (summary, samples):
        data = exports.csv_bytes(df)
        assert not data.startswith(b"#") and b"\n#" not in data
        back = pd.read_csv(io.BytesIO(data))
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
    assert set(samples["task"]) == {"shapes"}, "only computed tasks"
    assert sorted(samples["eps"].unique()) == list(job.request.eps_values)
    assert {"criterion_met", "criterion_met_head", "loss_bound_lse"} <= set(samples.columns)
    assert bool(summary["head_attack"].all()) and bool(summary["loss_attack"].all()), "final tables are complete"


def test_script_is_one_command_over_every_computed_eps_and_task(finished: tuple[jobs.EvaluationJob, Path]) -> None:
    job, _ = finished
    script = exports.repro_script(job)
    commands = [shlex.split(line) for line in script.splitlines() if line.startswith("python -m rtcore")]
    assert len(commands) == 1, "the dashboard computed in stages; one command reproduces them"
    (argv,) = commands
    assert argv[argv.index("--tasks") + 1:argv.index("--eps")] == ["shapes"], "an unavailable task is not listed"
    assert [float(e) for e in argv[argv.index("--eps") + 1:argv.index("--norm")]] == list(job.request.eps_values)
    assert "--samples-out" in argv and "--out" in argv


def test_the_script_reproduces_the_per_sample_csv_bit_for_bit(finished: tuple[jobs.EvaluationJob, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The script's command through ``rtcore.cli.main`` on a fresh cache (the dashboard computed in stages,
    the command in one run); only the features and the probes are copied over, to keep the test short."""
    job, tmp = finished
    fresh = tmp / "fresh-cache"
    for kind in ("features", "probe"):
        shutil.copytree(Path(job.request.cache_dir) / "results" / kind, fresh / "results" / kind)
    out = tmp / "cli"
    out.mkdir()
    monkeypatch.chdir(out)
    for line in exports.repro_script(job).splitlines():
        if line.startswith("python -m rtcore"):
            argv = shlex.split(line)[3:] + ["--cache-dir", str(fresh)]
            assert rtcore.cli.main(argv) == 0, line
    _, samples = exports.export_tables(job)
    written = (out / exports.download_name(job.request, "samples")).read_bytes()
    assert written == exports.csv_bytes(samples), "the CLI's per-sample CSV equals the dashboard's byte for byte"
    summary = pd.read_csv(out / exports.download_name(job.request, "summary"))
    dash = pd.read_csv(io.BytesIO(exports.csv_bytes(exports.export_tables(job)[0])))
    cols = [c for c in dash.columns if c != "seconds"]
    pd.testing.assert_frame_equal(summary[cols], dash[cols])


def test_concatenating_the_parts_gives_the_dashboards_csv(tmp_path: Path) -> None:
    """With several probes (or backbones) the script writes one CSV per part and concatenates them with
    head/tail, which must equal the dashboard's CSV of the concatenated tables."""
    import subprocess

    import numpy as np

    rng = np.random.default_rng(0)
    parts = [pd.DataFrame({"task": "shapes", "probe": p, "eps": [0.0, 0.003921569], "rho": rng.normal(size=2),
                           "criterion_met": [True, False], "probe_radius": r}) for p, r in (("logistic", 0.0),
                                                                                          ("robust", 0.0837))]
    names = []
    for i, df in enumerate(parts):
        (tmp_path / f"part{i}.csv").write_bytes(exports.csv_bytes(df))
        names.append(f"part{i}.csv")
    subprocess.run(["bash", "-c", f"{{ head -n 1 {names[0]}; tail -q -n +2 {' '.join(names)}; }} > all.csv"],
                   cwd=tmp_path, check=True)
    assert (tmp_path / "all.csv").read_bytes() == exports.csv_bytes(pd.concat(parts, ignore_index=True))
