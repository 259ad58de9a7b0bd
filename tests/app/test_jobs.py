"""Background jobs: the planner's units run one by one on the shared device (steps of concurrent jobs
interleave), rapid changes coalesce into one job, sessions asking the same share one job and one executor,
an added eps keeps the earlier rows on screen, the time estimate is measured, owners of ended sessions are
pruned, and checkpoint uploads live in the cache folder and expire.

Fast: the executors are stubs that take no time (one test runs a real, tiny evaluation); no browser.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from unittest.mock import MagicMock

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from streamlit.runtime import Runtime
from streamlit.testing.v1 import AppTest

import rtcore
from app import backbones as bb
from app import devices, jobs, registry, state
from rtcore.config import default_cache_dir, eps_grid
from rtcore.models.ref import BackboneRef
from rtcore.runs import Evaluation, Unit, UnitReport

BACKBONE = "fmnist-cnn-standard"
WAIT_S = 20.0
UNITS = 5  # one task: fit, attack at 4/255, attack at the rest, head/loss at 4/255, head/loss at the rest


def wait_until(predicate, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Recorder:
    """What the stub executors did: every unit run (spec's n, stage, eps), in order; units of the n in ``hold``
    wait for ``release`` (reporting progress, so a cancel stops them); ``unavailable`` tasks raise."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[int, str, tuple[float, ...]]] = []
        self.active = self.max_active = 0
        self.release = threading.Event()
        self.hold: set[int] = set()
        self.cached = False
        self.seconds_per_eps = 0.0
        self.unavailable: set[str] = set()
        self.created = 0


class StubExecutor:
    """Stands in for rtcore.runs.Executor: runs a unit by recording it; its tables have one row per (task, eps)
    done, with head_attack once the head/loss unit ran."""

    rec: Recorder

    def __init__(self, spec, backbone=None, cache_dir=None) -> None:  # noqa: ANN001
        self.spec, self.version, self.rows = spec, 0, {}
        with self.rec.lock:
            self.rec.created += 1

    def run(self, unit: Unit, progress) -> UnitReport:  # noqa: ANN001
        rec = self.rec
        if unit.task in rec.unavailable:
            raise rtcore.TaskUnavailableError(f"task {unit.task!r} needs a download")
        with rec.lock:
            first = not any(s[0] == unit.spec.n for s in rec.started)
            rec.started.append((unit.spec.n, unit.stage, unit.eps))
            rec.active += 1
            rec.max_active = max(rec.max_active, rec.active)
        try:
            if not rec.cached:
                progress(rtcore.ProgressEvent("feature attack", 0.5, unit.task))
            if first and unit.spec.n in rec.hold:
                while not rec.release.wait(0.01):
                    progress(rtcore.ProgressEvent("feature attack", 0.5, unit.task))  # raises once cancelled
            time.sleep(rec.seconds_per_eps * sum(1 for e in unit.eps if e > 0))
            for e in unit.eps or (0.0,):
                row = self.rows.setdefault((unit.task, e), {"head": False})
                row["head"] |= unit.stage == "head_loss"
            self.version += 1
            return UnitReport(unit, rec.seconds_per_eps, not rec.cached)
        finally:
            with rec.lock:
                rec.active -= 1

    def evaluation(self) -> Evaluation:
        s = self.spec
        rows = [{"backbone": s.backbone.display, "task": t, "probe": s.probe, "norm": s.norm, "eps": e, "n": s.n,
                 "robust_acc": 0.5, "robust_acc_lo": 0.4, "robust_acc_hi": 0.6, "head_attack": r["head"],
                 "loss_attack": r["head"]} for (t, e), r in sorted(self.rows.items())]
        summary = pd.DataFrame(rows)
        samples = summary[["backbone", "task", "probe", "norm", "eps"]].assign(sample=0) if rows else pd.DataFrame()
        return Evaluation(summary, samples)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(StubExecutor, "rec", rec, raising=False)
    monkeypatch.setattr(jobs, "Executor", StubExecutor)
    monkeypatch.setattr(jobs, "EXECUTORS", jobs.Executors())
    yield rec
    rec.release.set()  # never leave a job thread waiting


def request(n: int, tmp_path: Path, tasks: tuple[str, ...] = ("shapes",), **kw: object) -> jobs.Request:
    return jobs.make_request([BackboneRef(BACKBONE)], tasks, "linf", n, "fast", cache_dir=str(tmp_path), **kw)


def backbones() -> dict[BackboneRef, torch.nn.Module]:
    return {BackboneRef(BACKBONE): torch.nn.Identity()}


def job(n: int, tmp_path: Path, **kw: object) -> jobs.Job:
    return jobs.Job(request(n, tmp_path, **kw), backbones()).start()


# ---------------------------------------------------------------- the device, unit by unit

def test_units_follow_the_library_planner(stub: Recorder, tmp_path: Path) -> None:
    j = job(20, tmp_path)
    j.join(WAIT_S)
    grid = eps_grid("linf")
    assert [(stage, eps) for _, stage, eps in stub.started] == [(u.stage, u.eps) for u in j.request.units()]
    assert stub.started[:2] == [(20, "fit", (0.0,)), (20, "attack", (grid[3],))], "clean accuracy, then 4/255"
    snap = j.snapshot()
    assert snap.done and sorted(snap.summary["eps"]) == list(grid) and not snap.preliminary


def test_two_jobs_take_turns_on_the_device(stub: Recorder, tmp_path: Path) -> None:
    stub.hold = {20}
    a = job(20, tmp_path)
    assert wait_until(lambda: any(s[0] == 20 for s in stub.started)), "job a runs its first unit"
    b = job(21, tmp_path)
    assert wait_until(lambda: "another session's job" in b.progress()[1], timeout=5), b.progress()[1]
    assert f"another session's job is at step 1/{UNITS}" in b.progress()[1]
    assert devices.DEVICE_LOCK.holder is a
    stub.release.set()
    a.join(WAIT_S)
    b.join(WAIT_S)
    assert a.done and b.done and not a.failed and not b.failed
    assert [n for n, *_ in stub.started] == [20, 21] * UNITS, "units interleave instead of one job running to its end"
    assert stub.max_active == 1 and devices.DEVICE_LOCK.holder is None


def test_a_job_cancelled_while_waiting_leaves_the_queue(stub: Recorder, tmp_path: Path) -> None:
    stub.hold = {20}
    a = job(20, tmp_path)
    assert wait_until(lambda: any(s[0] == 20 for s in stub.started))
    b = job(21, tmp_path)
    assert wait_until(lambda: "waiting for the device" in b.progress()[1], timeout=5)
    b.cancel()
    b.join(5)
    assert b.done and b.snapshot().cancelled and not b.failed
    assert not any(n == 21 for n, *_ in stub.started), "the cancelled job never took the device"
    stub.release.set()
    a.join(WAIT_S)
    assert a.done and not a.failed and devices.DEVICE_LOCK.holder is None


def test_an_unavailable_task_is_skipped_with_a_warning(stub: Recorder, tmp_path: Path) -> None:
    stub.unavailable = {"mnist"}
    j = job(20, tmp_path, tasks=("shapes", "mnist"))
    j.join(WAIT_S)
    snap = j.snapshot()
    assert not snap.errors and any("'mnist' skipped" in w for w in snap.warnings)
    assert set(snap.summary["task"]) == {"shapes"}
    _, _, parts = j.export()
    assert [tasks for _, tasks in parts] == [("shapes",)], "the export names only computed tasks"


# ---------------------------------------------------------------- sharing and coalescing

def test_sessions_asking_the_same_share_one_job_and_executor(stub: Recorder, tmp_path: Path) -> None:
    """A cold server's first visitors (12 sessions at once) are served by one job, not twelve."""
    reg = registry.JobRegistry(start_delay=0)
    req = request(20, tmp_path)
    got = [reg.submit(req, lambda old, d: jobs.Job(req, backbones(), d), owner=f"s{i}:main") for i in range(12)]
    assert len({id(j) for j in got}) == 1 and reg.created == 1 and stub.created == 1
    got[0].join(WAIT_S)
    assert len(stub.started) == UNITS


def test_rapid_changes_coalesce_into_one_job(stub: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "JOBS", registry.JobRegistry(start_delay=0.4))
    first = registry.submit(request(30, tmp_path), backbones(), owner="a:main")
    first.join(WAIT_S)
    burst = [registry.submit(request(n, tmp_path), backbones(), owner="a:main") for n in (31, 32, 33, 34)]
    burst[-1].join(WAIT_S)
    for j in burst[:-1]:
        j.join(WAIT_S)
        assert j.cancelled and j.computed_steps == 0, "a replaced job never computed anything"
    assert {n for n, *_ in stub.started} == {30, 34}, "only the first and the last request ran"
    assert burst[-1].computed_steps == UNITS


def test_an_added_eps_keeps_the_earlier_rows_on_screen(stub: Recorder, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "JOBS", registry.JobRegistry(start_delay=0))
    a = registry.submit(request(40, tmp_path), backbones(), owner="a:main")
    a.join(WAIT_S)
    stub.hold = {40}  # hold the new job's first unit
    stub.started.clear()
    b = registry.submit(request(40, tmp_path, extras=[0.05]), backbones(), owner="a:main")
    assert b is not a and b.fallback is a
    assert wait_until(lambda: len(stub.started) == 1)
    assert sorted(b.snapshot().summary["eps"]) == list(eps_grid("linf")), "the grid's rows stay on screen"
    stub.release.set()
    b.join(WAIT_S)
    assert sorted(b.snapshot().summary["eps"]) == sorted([*eps_grid("linf"), 0.05])
    assert [s[1:] for s in stub.started][1:3] == [("attack", (eps_grid("linf")[3],)), ("attack", (0.05,))], \
        "the added eps right after the first look"


def test_tables_of_two_jobs_never_share_a_key(stub: Recorder, tmp_path: Path) -> None:
    """The shared figures are cached by the tables' key: two jobs whose executors reached the same version (a new
    task added, the same number of units done) must not draw each other's figures."""
    a, b = job(70, tmp_path), job(71, tmp_path)  # other requests, the same number of units
    a.join(WAIT_S)
    b.join(WAIT_S)
    assert [ex.version for ex in a.executors] == [ex.version for ex in b.executors] == [UNITS]
    assert a.tables().key != b.tables().key
    assert a.tables() is a.tables(), "built once per version"


# ---------------------------------------------------------------- progress and the time estimate

def test_progress_reports_the_measured_time_left(stub: Recorder, tmp_path: Path) -> None:
    """No estimate before a step was computed (the first unit is held), an estimate with the elapsed time after."""
    stub.seconds_per_eps, stub.hold = 0.05, {60}
    j = job(60, tmp_path)
    assert wait_until(lambda: "measured after the first computed step" in j.progress()[1]), j.progress()
    stub.release.set()
    assert wait_until(lambda: re.search(r"elapsed, about .+ left$", j.progress()[1]) is not None), j.progress()
    j.join(WAIT_S)
    assert j.done


def test_a_cached_unit_never_says_it_fits_a_probe(stub: Recorder, tmp_path: Path) -> None:
    """The stage is shown only when the library reports it computing; a cache hit reads 'checking the cache'."""
    stub.cached, stub.hold = True, {61}
    j = job(61, tmp_path)
    stub.release.set()
    texts = []
    while not j.done:
        texts.append(j.progress()[1])
    j.join(WAIT_S)
    assert not any("fitting the linear probe" in t or "feature attack" in t for t in texts)
    assert j.computed_steps == 0


def test_a_real_tiny_job_finishes_and_frees_the_device(tmp_path: Path) -> None:
    if BACKBONE not in state.backbone_choices():
        pytest.skip(f"{BACKBONE} is not bundled here")
    ref = BackboneRef(BACKBONE)
    req = jobs.make_request([ref], ["shapes"], "linf", 20, "fast", cache_dir=str(tmp_path / "cache"))
    j = jobs.Job(req, {ref: bb.load_backbone(ref, device="cpu")}).start()
    j.join(300)
    snap = j.snapshot()
    assert snap.done and not snap.errors, snap.errors
    assert sorted(snap.summary["eps"]) == list(eps_grid("linf"))
    assert (snap.summary["bound"] <= snap.summary["bound_head"] + 1e-12).all()
    assert (snap.summary["robust_acc_lo"] <= snap.summary["robust_acc"]).all(), "intervals from the library"
    assert devices.DEVICE_LOCK.holder is None and j.computed_steps == UNITS


# ---------------------------------------------------------------- owners of ended sessions

def test_owner_of_an_ended_session_is_pruned_and_no_longer_keeps_a_job(stub: Recorder, tmp_path: Path) -> None:
    alive = {"a", "b"}
    reg = registry.JobRegistry(is_alive=lambda owner: owner.split(":", 1)[0] in alive, start_delay=0)
    r1, r2 = request(20, tmp_path), request(21, tmp_path)
    stub.hold = {20}
    job1 = reg.submit(r1, lambda old, d: jobs.Job(r1, backbones(), d), owner="a:main")
    assert reg.submit(r1, lambda old, d: jobs.Job(r1, backbones(), d), owner="b:main") is job1
    alive.discard("a")  # session a closed its browser tab
    job2 = reg.submit(r2, lambda old, d: jobs.Job(r2, backbones(), d), owner="b:main")
    assert reg.owners() == {"b:main": r2}, "the ended session's owner is gone"
    assert job1.cancelled and not job2.cancelled, "nobody follows r1 any more, so b's newer request stops it"
    job1.join(WAIT_S)
    job2.join(WAIT_S)
    assert job2.done and not job2.failed


def test_a_live_session_still_keeps_a_shared_job(stub: Recorder, tmp_path: Path) -> None:
    reg = registry.JobRegistry(is_alive=lambda owner: True, start_delay=0)
    r1, r2 = request(20, tmp_path), request(21, tmp_path)
    stub.hold = {20}
    job1 = reg.submit(r1, lambda old, d: jobs.Job(r1, backbones(), d), owner="a:main")
    reg.submit(r1, lambda old, d: jobs.Job(r1, backbones(), d), owner="b:main")
    reg.submit(r2, lambda old, d: jobs.Job(r2, backbones(), d), owner="b:main")
    assert not job1.cancelled and reg.prune_owners() == 0, "session a still follows r1"
    stub.release.set()
    job1.join(WAIT_S)


def test_owners_of_jobs_no_longer_in_the_registry_are_dropped(stub: Recorder, tmp_path: Path) -> None:
    reg = registry.JobRegistry(keep=0, start_delay=0)
    r1, r2, r3 = request(20, tmp_path), request(21, tmp_path), request(22, tmp_path)
    reg.submit(r1, lambda old, d: jobs.Job(r1, backbones(), d), owner="a:main").join(WAIT_S)
    reg.discard(r1)
    assert reg.owners() == {}, "a discarded job has no owner"
    reg.submit(r2, lambda old, d: jobs.Job(r2, backbones(), d), owner="a:main").join(WAIT_S)
    reg.submit(r3, lambda old, d: jobs.Job(r3, backbones(), d), owner="b:main").join(WAIT_S)
    assert reg.get(r2) is None and "a:main" not in reg.owners() and reg.owners()["b:main"] == r3


class FakeRuntime:
    def __init__(self, active: set[str]) -> None:
        self.active = active

    def is_active_session(self, session_id: str) -> bool:
        return session_id in self.active


def test_streamlit_sessions_ask_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = devices.StreamlitSessions()
    sessions.register("tok", "sid-1")
    monkeypatch.setattr(Runtime, "_instance", None)
    assert sessions("tok:main"), "no runtime (plain Python): alive"
    monkeypatch.setattr(Runtime, "_instance", MagicMock(spec=Runtime))
    assert sessions("tok:main"), "AppTest's mock runtime cannot tell: alive"
    runtime = FakeRuntime({"sid-1"})
    monkeypatch.setattr(Runtime, "_instance", runtime)
    assert sessions("tok:main") and sessions("unknown-token:main")
    runtime.active.clear()
    assert not sessions("tok:main") and not sessions("tok:compare"), "every slot of the ended session"
    assert sessions("other:main"), "an unregistered token is never pruned"
    runtime.active.add("sid-2")
    sessions.register("tok", "sid-2")
    assert sessions("tok:main")


def test_dashboard_registers_its_session_and_the_registry_prunes_it(stub: Recorder, monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    if BACKBONE not in state.backbone_choices():
        pytest.skip(f"{BACKBONE} is not bundled here")
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path / "cache"))

    def script() -> None:
        import streamlit as st

        from app import ui
        from rtcore.models.ref import BackboneRef

        ui.init_session()
        ui.evaluate([BackboneRef(st.session_state["test_backbone"])], slot="main")

    at = AppTest.from_function(script, default_timeout=120)
    token = f"test-{os.getpid()}-{time.monotonic_ns()}"
    for k, v in {"session_token": token, "tasks": ["shapes"], "n": 20, "attack": "fast",
                 "test_backbone": BACKBONE}.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    owner = f"{token}:main"
    req = registry.JOBS.owners().get(owner)
    assert req is not None, "evaluate() records the session's owner"
    try:
        monkeypatch.setattr(Runtime, "_instance", None)
        registry.JOBS.prune_owners()
        assert owner in registry.JOBS.owners(), "no runtime: the owner is kept"
        monkeypatch.setattr(Runtime, "_instance", FakeRuntime(set()))
        registry.JOBS.prune_owners()
        assert owner not in registry.JOBS.owners(), "the session id was registered with the token"
    finally:
        registry.JOBS.get(req).join(WAIT_S)
        registry.JOBS.discard(req)


# ---------------------------------------------------------------- uploads

@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def checkpoint_bytes(tmp_path: Path, name: str = "src.safetensors") -> bytes:
    src = tmp_path / name
    save_file({"w": torch.arange(12, dtype=torch.float32).reshape(3, 4)}, str(src))
    return src.read_bytes()


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def stored(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_uploads_are_stored_in_the_cache_folder(cache: Path, tmp_path: Path) -> None:
    data = checkpoint_bytes(tmp_path)
    path = bb.save_upload("my model.safetensors", data)
    assert bb.upload_dir() == default_cache_dir() / "uploads" == cache / "uploads"
    assert path.parent == cache / "uploads" and path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stored(path.parent) == [path], "no temporary left behind"


def test_unused_uploads_are_pruned_on_save(cache: Path, tmp_path: Path) -> None:
    folder = cache / "uploads"
    old = bb.save_upload("old.safetensors", checkpoint_bytes(tmp_path, "a.safetensors"))
    recent = bb.save_upload("recent.safetensors", checkpoint_bytes(tmp_path, "b.safetensors"))
    age(old, 25 * 3600)
    age(recent, 23 * 3600)
    foreign = folder / "notes.txt"
    foreign.write_text("not an upload")
    age(foreign, 48 * 3600)
    leftover = folder / ".tmp-crashed"
    leftover.mkdir()
    age(leftover, 48 * 3600)
    src = tmp_path / "c.safetensors"
    save_file({"v": torch.ones(5)}, str(src))
    new = bb.save_upload("new.safetensors", src.read_bytes())
    assert not old.exists(), "unused for more than 24 hours"
    assert recent.exists() and new.exists() and foreign.exists() and not leftover.exists()


def test_an_upload_in_use_is_touched_and_kept(cache: Path, tmp_path: Path) -> None:
    path = bb.save_upload("mine.safetensors", checkpoint_bytes(tmp_path))
    age(path, 25 * 3600)
    ref = bb.upload_ref("resnet18", path, "mine.safetensors")  # every script run of a session using it
    assert time.time() - path.stat().st_mtime < 60
    assert ref.display == "timm:resnet18 + mine.safetensors" and ref.weights == str(path)
    age(path, 25 * 3600)
    with pytest.raises(rtcore.CheckpointError):  # the wrong architecture, but the file was used
        bb.load_backbone(ref, device="cpu")
    assert time.time() - path.stat().st_mtime < 60
    src = tmp_path / "other.safetensors"
    save_file({"v": torch.ones(5)}, str(src))
    bb.save_upload("other.safetensors", src.read_bytes())
    assert path.exists()
    age(path, 25 * 3600)
    bb.save_upload("other.safetensors", src.read_bytes())
    assert not path.exists()
    with pytest.raises(bb.UploadError, match="upload it again"):
        bb.upload_ref("resnet18", path, "mine.safetensors")


def test_a_reupload_refreshes_the_stored_file(cache: Path, tmp_path: Path) -> None:
    data = checkpoint_bytes(tmp_path)
    path = bb.save_upload("mine.safetensors", data)
    age(path, 25 * 3600)
    assert bb.save_upload("mine.safetensors", data) == path
    assert path.exists() and time.time() - path.stat().st_mtime < 60


def refused(cache: Path, data: bytes, match: str) -> str:
    with pytest.raises(bb.UploadError, match=match) as info:
        bb.save_upload("model.safetensors", data)
    assert "model.safetensors" in str(info.value), "the message names the file"
    assert isinstance(info.value.__cause__, rtcore.CheckpointError)
    assert stored(cache / "uploads") == [], "nothing refused is stored, no temporary is left"
    return str(info.value)


def test_malformed_checkpoints_are_refused(cache: Path, tmp_path: Path) -> None:
    refused(cache, checkpoint_bytes(tmp_path)[:-10], "truncated")
    header = b"{this is: not json]"
    refused(cache, len(header).to_bytes(8, "little") + header + b"\0" * 16, "not JSON")
    n = 120 * 1000 * 1000
    assert "limit" in refused(cache, n.to_bytes(8, "little") + b'{"w": {}}' + b"\0" * 64, str(n))
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    refused(cache, len(header).to_bytes(8, "little") + header + b"\0" * 8, "needs 16 bytes")
