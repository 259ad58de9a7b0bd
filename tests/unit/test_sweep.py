"""Sweeps (rtcore.runs.sweep): the spec checked before any work, the local engine without Ray, a real local
Ray instance giving exactly the local numbers, a SIGKILL part-way and a rerun that computes only what is
missing, a failing unit that does not stop the others, and the zoo loader.

One tiny sweep serves every test: two bundled backbones x one task x one eps, n = 8, the `fast` attack,
two probes (4 units in 2 feature-attack groups). Ray is started once for the module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rtcore.cli import main
from rtcore.runs.engines import Finished, SweepOutcome
from rtcore.runs.sweep import SweepEvent, _Driver, list_sweeps, load_sweep, pretraining_protocol, sweep
from rtcore.runs.sweep_spec import SweepSpec, load_sweep_spec
from rtcore.runs.sweep_store import SweepStore

REPO = Path(__file__).resolve().parents[2]
TINY = {"backbones": ["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"], "tasks": ["fmnist-novel"],
        "eps": ["2/255"], "n": 8, "attack": "fast", "probes": ["logistic", "logistic-std"], "probe_C": 1.0}
TOML = """backbones = ["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"]
tasks = ["fmnist-novel"]
eps = ["2/255"]
n = 8
attack = "fast"
probes = ["logistic", "logistic-std"]
probe_C = 1.0
"""
#: the CLI in a fresh interpreter that fails if the local engine imported Ray
NO_RAY = ("import sys; from rtcore.cli import main; rc = main(sys.argv[1:]); "
          "sys.exit(97 if 'ray' in sys.modules else rc)")


def numbers(df: pd.DataFrame) -> pd.DataFrame:
    """A table without its timing column (the only one that differs between runs)."""
    return df.drop(columns=[c for c in ("seconds",) if c in df.columns]).reset_index(drop=True)


def cli(args: list[str], **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", NO_RAY, *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep-spec") / "tiny.toml"
    path.write_text(TOML)
    return path


@pytest.fixture(scope="module")
def reference(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The tiny sweep run by the CLI with the local engine in a fresh process (which must not import Ray)."""
    root = tmp_path_factory.mktemp("sweep-local")
    proc = cli(["sweep", str(spec_file), "--out", str(root / "out"), "--cache-dir", str(root / "cache")])
    out, err = proc.communicate(timeout=600)
    return {"rc": proc.returncode, "out": out, "err": err, "dir": root / "out", "cache": root / "cache"}


@pytest.fixture(scope="module")
def ray_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty HOME for the module's Ray instance: Ray must leave it empty."""
    return tmp_path_factory.mktemp("ray-home")


@pytest.fixture(scope="module")
def ray_session(ray_home: Path) -> object:
    """A local Ray instance started as a sweep starts one (2 CPUs, no dashboard), with HOME pointed at an empty
    folder; shut down after the module."""
    ray = pytest.importorskip("ray")
    from rtcore.runs.engines import RayEngine

    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(ray_home))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        mp.delenv(var, raising=False)
    engine = RayEngine(None, workers=2)
    assert engine.owned and ray.is_initialized()
    yield ray
    engine.close()
    mp.undo()


# ---------------------------------------------------------------- the spec

def test_every_value_is_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TOML.replace('"fmnist-cnn-standard"', '"fmnist-cnn-standrd"').replace('"fmnist-novel"',
                                                                                          '"fmnist-novel", "shaps"'))
    t0 = time.perf_counter()
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "fmnist-cnn-standrd" in err and "'shaps'" in err and "2 problems" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started
    assert time.perf_counter() - t0 < 10
    with pytest.raises(ValueError, match="'seeds' -> 'seed'"):
        SweepSpec.from_dict({**TINY, "seeds": [0, 1]})
    with pytest.raises(ValueError, match="probe_eps"):
        SweepSpec.from_dict({**TINY, "probe_eps": 0.01})
    with pytest.raises(ValueError, match="more than once"):
        SweepSpec.from_dict({**TINY, "tasks": ["shapes", "shapes"]})
    with pytest.raises(ValueError, match="engine"):
        sweep(TINY, tmp_path / "o", engine="dask")


def test_expansion_follows_the_spec_rules(spec_file: Path) -> None:
    spec = load_sweep_spec(spec_file)
    assert [(u.backbone, u.spec.probe) for u in spec.units] == [
        ("fmnist-cnn-pgd-linf-0.1", "logistic"), ("fmnist-cnn-pgd-linf-0.1", "logistic-std"),
        ("fmnist-cnn-standard", "logistic"), ("fmnist-cnn-standard", "logistic-std")]
    assert spec.units[0].spec.probe_C == 1.0 and spec.units[1].spec.probe_C == "auto"  # C only where it applies
    assert len({u.group for u in spec.units}) == 2  # the probes of one backbone and task share the feature attack
    assert SweepSpec.from_dict(spec.to_dict()).digest() == spec.digest()
    mixed = SweepSpec.from_dict({**TINY, "probes": ["logistic", "robust"], "transfers": ["lp", "ft"], "seed": [0, 1]})
    pairs = {(u.spec.transfer, u.spec.probe) for u in mixed.units}
    assert pairs == {("lp", "logistic"), ("lp", "robust"), ("ft", "logistic")}  # ft trains its own head
    assert len(mixed.units) == 2 * 3 * 2
    table = SweepSpec.from_dict({**TINY, "backbones": [{"backbone": "fmnist-cnn-standard", "label": "std"}]})
    assert table.units[0].backbone == "std"


# ---------------------------------------------------------------- engines give the same numbers

def test_local_engine_runs_without_ray(reference: dict[str, object]) -> None:
    assert reference["rc"] == 0, reference["err"]  # 97 would mean the local engine imported Ray
    out = Path(reference["dir"])  # type: ignore[arg-type]
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and set(summary["probe"]) == {"logistic", "logistic-std"}
    assert {"backbone", "task", "eps", "probe", "transfer", "clean_acc", "robust_acc", "bound"} <= set(summary.columns)
    assert len(pd.read_csv(out / "samples.csv")) == 4 * 8
    assert pd.read_csv(out / "failures.csv").empty
    assert len(list((out / "units").glob("*.json"))) == 4
    err = str(reference["err"])
    assert "4/4 done" in err and "failed" in err and "left" in err


def test_ray_gives_exactly_the_local_numbers(ray_session: object, reference: dict[str, object],
                                             tmp_path: Path, ray_home: Path) -> None:
    events: list[SweepEvent] = []
    res = sweep(TINY, tmp_path / "out", engine="ray", cache_dir=tmp_path / "cache", progress=events.append)
    assert sorted(ray_home.rglob("*")) == [], "Ray wrote under HOME (its temp folder or ~/.ray/auth_token)"
    assert res.ok and res.exit_code == 0 and len(res.ran) == 4 and not res.reused
    ref_dir = Path(reference["dir"])  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(numbers(pd.read_csv(tmp_path / "out" / "summary.csv")),
                                  numbers(pd.read_csv(ref_dir / "summary.csv")))
    assert (tmp_path / "out" / "samples.csv").read_bytes() == (ref_dir / "samples.csv").read_bytes()
    # the first unit of a group runs alone: each feature attack was computed once, not once per probe
    assert len(list((tmp_path / "cache" / "results" / "feature_attack").glob("*.safetensors"))) == 2
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("unit-done") == 4
    assert max(e.running for e in events) <= 2 and events[-1].done == 4
    assert any(e.eta_seconds is not None for e in events if e.kind == "unit-done")
    assert all(0 <= res.latency[u] - res.unit_seconds[u] for u in res.ran)  # the engine's overhead is measured
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "units").glob("*.json")]
    assert {r["ran_on"]["threads"] for r in records} == {1}  # torch threads = the task's num_cpus
    assert os.getpid() not in {r["ran_on"]["pid"] for r in records}  # they ran in Ray's worker processes


# ---------------------------------------------------------------- nothing lost

def test_sigkill_then_rerun_computes_only_the_missing_units(spec_file: Path, reference: dict[str, object],
                                                             tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = cli(["sweep", str(spec_file), "--out", str(out), "--cache-dir", str(cache)])
    deadline = time.monotonic() + 300
    while not list((out / "units").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    landed = sorted(p.name[: -len(".json")] for p in (out / "units").glob("*.json"))
    assert 1 <= len(landed) < 4, f"the kill came too late to test anything ({landed})"
    assert not (out / "summary.csv").exists()

    res = sweep(spec_file, out, cache_dir=cache)
    assert sorted(res.reused) == landed and len(res.ran) == 4 - len(landed) and res.ok
    assert set(res.ran).isdisjoint(landed)
    ref_dir = Path(reference["dir"])  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(numbers(res.summary), numbers(pd.read_csv(ref_dir / "summary.csv")))
    assert (out / "samples.csv").read_bytes() == (ref_dir / "samples.csv").read_bytes()

    # a stored unit whose CSV was changed fails its checksum and is recomputed; the others are reused
    victim = SweepStore(out).files(res.reused[0])[0]
    victim.write_text(victim.read_text().replace("0.", "0.9", 1))
    again = sweep(spec_file, out, cache_dir=cache)
    assert again.ran == [res.reused[0]] and len(again.reused) == 3
    assert again.rejected and "checksum" in again.rejected[0][1]
    pd.testing.assert_frame_equal(numbers(again.summary), numbers(pd.read_csv(ref_dir / "summary.csv")))


def test_a_failing_unit_does_not_stop_the_others(reference: dict[str, object], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "zoo.json"
    one_probe = {k: v for k, v in TINY.items() if k != "probe_C"}
    spec.write_text(json.dumps({**one_probe, "backbones": ["timm:no_such_model_xyz", "fmnist-cnn-standard"],
                                "probes": ["logistic-std"]}))
    out = tmp_path / "out"
    code = main(["sweep", str(spec), "--out", str(out), "--cache-dir", str(reference["cache"])])
    assert code == 1
    err = capsys.readouterr().err
    assert "no_such_model_xyz" in err and "Traceback" not in err
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures["backbone"]) == ["timm:no_such_model_xyz"] and failures["traceback"].isna().all()
    assert "no_such_model_xyz" in failures["error"][0]
    ref = pd.read_csv(Path(reference["dir"]) / "summary.csv")  # type: ignore[arg-type]
    want = ref[(ref["backbone"] == "fmnist-cnn-standard") & (ref["probe"] == "logistic-std")]
    pd.testing.assert_frame_equal(numbers(pd.read_csv(out / "summary.csv")), numbers(want))


# ---------------------------------------------------------------- scheduling (a stand-in engine)

class ListEngine:
    """Runs nothing: hands back canned outcomes, records what was submitted and when."""

    def __init__(self, slots: int, outcomes: dict[str, list[SweepOutcome]]) -> None:
        self._slots, self.outcomes, self.submitted, self.inflight = slots, outcomes, [], []

    def slots(self) -> int:
        return self._slots

    def submit(self, unit) -> None:  # noqa: ANN001
        self.submitted.append(unit.id)
        self.inflight.append(unit)

    def wait(self, timeout: float) -> list[Finished]:
        unit = self.inflight.pop(0)
        return [Finished(unit, self.outcomes[unit.id].pop(0), 0.0)]


def test_first_unit_of_a_group_runs_alone_and_out_of_memory_is_retried(tmp_path: Path) -> None:
    spec = SweepSpec.from_dict(TINY)
    units = list(spec.units)
    ok = pd.DataFrame({"x": [1.0]})
    oom = SweepOutcome(units[2].id, ok=False, error_type="OutOfMemoryError", error="CUDA out of memory",
                      retryable=True)
    outcomes = {u.id: [SweepOutcome(u.id, ok=True, summary=ok, samples=ok, seconds=1.0)] for u in units}
    outcomes[units[2].id] = [oom, oom, outcomes[units[2].id][0]]
    run = _Driver(SweepStore(tmp_path), units, retries=2, emit=lambda ev: None)
    eng = ListEngine(2, outcomes)
    run.drive(eng)  # type: ignore[arg-type]
    # the two group leaders first (units 0 and 2), never two units of one group before its leader is done;
    # a leader that ran out of memory leads again (its group's other unit waits for it)
    assert eng.submitted == [units[0].id, units[2].id, units[1].id, units[2].id, units[2].id, units[3].id]
    assert sorted(run.ran) == sorted(u.id for u in units)
    run = _Driver(SweepStore(tmp_path / "b"), units, retries=1, emit=lambda ev: None)
    outcomes = {u.id: [SweepOutcome(u.id, ok=True, summary=ok, samples=ok, seconds=1.0)] for u in units}
    outcomes[units[2].id] = [oom, oom]
    run.drive(ListEngine(1, outcomes))  # type: ignore[arg-type]
    assert list(run.failures) == [units[2].id] and run.failures[units[2].id]["attempts"] == 2


# ---------------------------------------------------------------- the zoo loader

def test_load_sweep_adds_the_pretraining_protocol(reference: dict[str, object], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    df = load_sweep(reference["dir"])  # type: ignore[arg-type]
    assert dict(zip(df["backbone"], df["protocol"])) == {"fmnist-cnn-pgd-linf-0.1": "adversarial",
                                                         "fmnist-cnn-standard": "standard"}
    assert pretraining_protocol("fmnist-cnn-simclr") == "self-supervised"
    assert pretraining_protocol("timm:resnet18") == "unknown"
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path))
    assert list_sweeps() == []
    with pytest.raises(ValueError, match="does not exist"):
        load_sweep(tmp_path / "nope")


def test_the_zoo_shows_only_verified_units_of_the_current_sweep(reference: dict[str, object], tmp_path: Path) -> None:
    """While a sweep runs (no current summary.csv): a previous run's summary, a unit file of another sweep and a
    damaged unit summary are not shown."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(reference["dir"], root)  # type: ignore[arg-type]
    full = load_sweep(root)
    units = sorted((root / "units").glob("*.summary.csv"))
    stale = root / "summary.csv"
    os.utime(stale, ns=(0, 0))  # older than sweep.json: a previous run's table
    shutil.copy(units[0], root / "units" / "other-sweep.summary.csv")
    shutil.copy(units[0].with_name(units[0].name.replace(".summary.csv", ".json")), root / "units" / "other-sweep.json")
    assert len(load_sweep(root)) == len(full), "the verified units of sweep.json, not the stale table"
    rows = len(pd.read_csv(units[0]))
    units[0].write_text(units[0].read_text().replace("0.", "1.", 1))  # damaged after its record was written
    assert len(load_sweep(root)) == len(full) - rows > 0


def test_a_local_ray_instance_finds_rtcore_and_runs_at_normal_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtcore.runs.engines import WORKER_NICENESS, _with_package_path

    monkeypatch.delenv(WORKER_NICENESS, raising=False)
    env = _with_package_path({"pip": ["x"]})["env_vars"]
    assert str(REPO) in env["PYTHONPATH"].split(os.pathsep) and env[WORKER_NICENESS] == "0"
    assert _with_package_path({"env_vars": {WORKER_NICENESS: "5"}})["env_vars"][WORKER_NICENESS] == "5"
