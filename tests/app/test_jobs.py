"""Background jobs: the device is shared step by step, rapid changes coalesce into one job, finished
steps are shared between requests, the time estimate comes from measured throughput, owners of ended
sessions are pruned, and uploads live in the cache folder and expire.

Fast: the job tests replace the evaluation by a stub that takes no time (one test runs a real, tiny
evaluation), and no browser is started.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from streamlit.runtime import Runtime
from streamlit.testing.v1 import AppTest

import rtcore
from app import backbones as bb
from app import devices, jobs, markers, registry, state
from app.plan import ATTACK, PROBE, Step, make_request
from rtcore.config import default_cache_dir

BACKBONE = "fmnist-cnn-standard"
WAIT_S = 20.0
STEPS = 6  # one task: eps 0, 4/255, the rest, then the head/loss attacks for the same three groups


def wait_until(predicate, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------- a stub evaluation

class StubEvaluation:
    """Stands in for rtcore.run_evaluation: records each step, can hold a step until released,
    reports an attack stage (as a computing step does) unless ``cached``, and can sleep per eps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[int, tuple[float, ...]]] = []
        self.active = 0
        self.max_active = 0
        self.release = threading.Event()
        self.hold: set[int] = set()  # n of the requests whose first step waits for ``release``
        self.cached = False
        self.seconds_per_eps = 0.0

    def __call__(self, g, tasks, eps_list, norm, n, *, progress, head_attack=True, loss_attack=True, probe="logistic",
                 **kw):
        with self.lock:
            first = not any(s[0] == n for s in self.started)
            self.started.append((n, tuple(eps_list)))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            progress(rtcore.ProgressEvent("linear probe", 0.0))
            if not self.cached:
                progress(rtcore.ProgressEvent("feature attack", 0.5))
            if first and n in self.hold:
                while not self.release.wait(0.01):
                    progress(rtcore.ProgressEvent("linear probe", 0.5))  # raises when the job is cancelled
            time.sleep(self.seconds_per_eps * sum(1 for e in eps_list if e > 0))
            task = tasks[0].name
            summary = pd.DataFrame({"task": task, "probe": probe, "norm": norm, "eps": list(eps_list), "n": n,
                                    "head_attack": head_attack, "loss_attack": loss_attack})
            samples = pd.DataFrame({"task": task, "probe": probe, "norm": norm, "eps": list(eps_list), "sample": 0})
            return rtcore.Evaluation(summary, samples)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> StubEvaluation:
    s = StubEvaluation()
    monkeypatch.setattr(jobs, "run_evaluation", s)
    monkeypatch.setattr(jobs, "cached_task", lambda name: SimpleNamespace(name=name, classes=("a", "b")))
    monkeypatch.setattr(jobs, "PIECES", jobs.PieceStore())
    yield s
    s.release.set()  # never leave a job thread waiting


def request(n: int, tmp_path: Path, **kw: object) -> jobs.EvalRequest:
    return make_request([bb.BackboneRef(BACKBONE)], ["shapes"], "linf", n, "fast", cache_dir=tmp_path / "cache", **kw)


def backbones() -> dict[bb.BackboneRef, torch.nn.Module]:
    return {bb.BackboneRef(BACKBONE): torch.nn.Identity()}


# ---------------------------------------------------------------- the device, step by step

def test_two_jobs_take_turns_on_the_device(stub: StubEvaluation, tmp_path: Path) -> None:
    stub.hold = {20}
    a = jobs.EvaluationJob(request(20, tmp_path), backbones()).start()
    assert wait_until(lambda: any(s[0] == 20 for s in stub.started)), "job a computes its first step"
    b = jobs.EvaluationJob(request(21, tmp_path), backbones()).start()
    assert wait_until(lambda: "another session's job" in b.progress()[1], timeout=5), b.progress()[1]
    text = b.progress()[1]
    assert re.search(rf"waiting for the device: another session's job is at step 1/{STEPS} \(\d+%\)", text), text
    assert devices.DEVICE_LOCK.holder is a
    stub.release.set()
    a.join(WAIT_S)
    b.join(WAIT_S)
    assert a.done and b.done and not a.failed and not b.failed
    order = [n for n, _ in stub.started if n in (20, 21)]
    assert order == [20, 21] * STEPS, "steps interleave instead of one job running to its end"
    assert stub.max_active == 1, "never two steps on the device at once"
    assert devices.DEVICE_LOCK.holder is None
    assert sorted(a.snapshot().summary["eps"]) == list(state.eps_grid("linf"))


def test_a_job_cancelled_while_waiting_leaves_the_queue(stub: StubEvaluation, tmp_path: Path) -> None:
    stub.hold = {20}
    a = jobs.EvaluationJob(request(20, tmp_path), backbones()).start()
    assert wait_until(lambda: any(s[0] == 20 for s in stub.started))
    b = jobs.EvaluationJob(request(21, tmp_path), backbones()).start()
    assert wait_until(lambda: "waiting for the device" in b.progress()[1], timeout=5)
    b.cancel()
    b.join(5)
    assert b.done and b.snapshot().cancelled and not b.failed
    assert not any(n == 21 for n, _ in stub.started), "the cancelled job never took the device"
    stub.release.set()
    a.join(WAIT_S)
    assert a.done and not a.failed and devices.DEVICE_LOCK.holder is None


def test_first_look_comes_first_and_full_rows_supersede_it(stub: StubEvaluation, tmp_path: Path) -> None:
    job = jobs.EvaluationJob(request(20, tmp_path), backbones()).start()
    job.join(WAIT_S)
    g = state.eps_grid("linf")
    assert [e for n, e in stub.started if n == 20][:2] == [(0.0,), (g[3],)], "clean accuracy, then 4/255"
    snap = job.snapshot()
    assert len(snap.summary) == len(g) and bool(snap.summary["head_attack"].all()), "the full rows win"
    assert not snap.preliminary
    assert [s.task for s, _ in job.export_pieces()] == ["shapes"]


# ---------------------------------------------------------------- coalescing and shared steps

def test_rapid_changes_coalesce_into_one_job(stub: StubEvaluation, tmp_path: Path) -> None:
    reg = registry.JobRegistry(start_delay=0.4)
    first = reg.submit(request(30, tmp_path), backbones(), owner="a:main")
    first.join(WAIT_S)
    burst = [reg.submit(request(n, tmp_path), backbones(), owner="a:main") for n in (31, 32, 33, 34)]
    burst[-1].join(WAIT_S)
    for job in burst[:-1]:
        job.join(WAIT_S)
        assert job.cancelled and job.computed_steps == 0, "a replaced job never computed anything"
    assert {n for n, _ in stub.started} == {30, 34}, "only the first and the last request ran"
    assert burst[-1].done and not burst[-1].failed and burst[-1].computed_steps == STEPS


def test_a_new_request_reuses_finished_steps(stub: StubEvaluation, tmp_path: Path) -> None:
    a = jobs.EvaluationJob(request(40, tmp_path), backbones()).start()
    a.join(WAIT_S)
    before = len(stub.started)
    b = jobs.EvaluationJob(request(40, tmp_path, extras=[0.05]), backbones()).start()
    assert wait_until(lambda: not b.snapshot().empty, timeout=2), "the cached curves are on screen at once"
    b.join(WAIT_S)
    new = [e for _, e in stub.started[before:]]
    assert new == [(0.05,), b.request.eps_values], "only the added eps, then one cached final step"
    assert sorted(b.snapshot().summary["eps"]) == list(b.request.eps_values)


def test_markers_skip_the_stages_of_a_warm_disk_cache(stub: StubEvaluation, tmp_path: Path) -> None:
    req = request(50, tmp_path)
    jobs.EvaluationJob(req, backbones()).start().join(WAIT_S)
    final = next(s for s in req.steps() if s.final)
    assert markers.complete(req, final)
    jobs.PIECES.clear()  # a new server process: nothing in memory
    stub.started.clear()
    stub.cached = True
    jobs.EvaluationJob(req, backbones()).start().join(WAIT_S)
    assert [e for _, e in stub.started] == [req.eps_values], "only the final, cached step runs"
    jobs.PIECES.clear()
    stub.started.clear()
    stub.cached = False  # an entry is missing after all: the guarded step falls back to the stages
    job = jobs.EvaluationJob(req, backbones()).start()
    job.join(WAIT_S)
    assert len(stub.started) == 1 + STEPS and not job.failed


# ---------------------------------------------------------------- the time estimate

def test_throughput_eta_uses_measured_seconds_per_unit() -> None:
    ref = bb.BackboneRef("x")
    tp = jobs.Throughput()
    probe = Step(ref, "logistic", "t", (0.0,), False, kind=PROBE, units=1)
    attack = Step(ref, "logistic", "t", (0.1, 0.2), False, kind=ATTACK, units=2)
    assert tp.eta([attack], None, 0.0) is None, "no estimate before a measurement"
    tp.record(probe, 3.0, computed=True)
    tp.record(attack, 8.0, computed=True)  # 4 s per (task, eps)
    tp.record(attack, 0.1, computed=False)  # a cached step does not dilute the rate
    assert tp.rate(ATTACK) == pytest.approx(4.0) and tp.rate(PROBE) == pytest.approx(3.0)
    assert tp.eta([attack, probe], None, 0.0) == pytest.approx(8.0 + 3.0)
    assert tp.eta([attack], attack, 0.5) == pytest.approx(4.0 + 8.0), "half of the current step is left"
    assert "4.0 s per (task, ε)" in tp.describe() and "3.0 s per probe fit" in tp.describe()


def test_progress_text_reports_the_measured_rate(stub: StubEvaluation, tmp_path: Path) -> None:
    stub.seconds_per_eps = 0.05
    job = jobs.EvaluationJob(request(60, tmp_path), backbones()).start()
    texts: list[str] = []
    while not job.done:
        texts.append(job.progress()[1])
        time.sleep(0.01)
    assert any("s per (task, ε)" in t and "left" in t for t in texts), texts[-5:]
    assert any("measuring the first steps" in t for t in texts)


def test_a_real_tiny_job_finishes_and_frees_the_device(tmp_path: Path) -> None:
    if BACKBONE not in state.backbone_choices():
        pytest.skip(f"{BACKBONE} is not bundled here")
    ref = bb.BackboneRef(BACKBONE)
    req = make_request([ref], ["shapes"], "linf", 20, "fast", cache_dir=tmp_path / "cache")
    job = jobs.EvaluationJob(req, {ref: bb.load_backbone(ref, device="cpu")}).start()
    job.join(300)
    snap = job.snapshot()
    assert snap.done and not snap.errors, snap.errors
    assert sorted(snap.summary["eps"]) == list(state.eps_grid("linf"))
    assert (snap.summary["bound"] <= snap.summary["bound_head"] + 1e-12).all()
    assert devices.DEVICE_LOCK.holder is None


# ---------------------------------------------------------------- owners of ended sessions

def test_owner_of_an_ended_session_is_pruned_and_no_longer_keeps_a_job(stub: StubEvaluation,
                                                                          tmp_path: Path) -> None:
    alive = {"a", "b"}
    reg = registry.JobRegistry(is_alive=lambda owner: owner.split(":", 1)[0] in alive, start_delay=0)
    r1, r2 = request(20, tmp_path), request(21, tmp_path)
    stub.hold = {20}
    job1 = reg.submit(r1, backbones(), owner="a:main")
    assert reg.submit(r1, backbones(), owner="b:main") is job1, "a second session attaches to the job"
    assert set(reg.owners()) == {"a:main", "b:main"}

    alive.discard("a")  # session a closed its browser tab
    job2 = reg.submit(r2, backbones(), owner="b:main")
    assert reg.owners() == {"b:main": r2}, "the ended session's owner is gone"
    assert job1.cancelled, "nobody follows r1 any more, so b's newer request stops it"
    assert not job2.cancelled
    job1.join(WAIT_S)
    job2.join(WAIT_S)
    assert job1.done and job2.done and not job2.failed


def test_a_live_session_still_keeps_a_shared_job(stub: StubEvaluation, tmp_path: Path) -> None:
    reg = registry.JobRegistry(is_alive=lambda owner: True, start_delay=0)
    r1, r2 = request(20, tmp_path), request(21, tmp_path)
    stub.hold = {20}
    job1 = reg.submit(r1, backbones(), owner="a:main")
    reg.submit(r1, backbones(), owner="b:main")
    reg.submit(r2, backbones(), owner="b:main")
    assert not job1.cancelled, "session a still follows r1"
    assert reg.prune_owners() == 0
    stub.release.set()
    job1.join(WAIT_S)


def test_owners_of_jobs_no_longer_in_the_registry_are_dropped(stub: StubEvaluation, tmp_path: Path) -> None:
    reg = registry.JobRegistry(keep=0, start_delay=0)
    r1, r2, r3 = request(20, tmp_path), request(21, tmp_path), request(22, tmp_path)
    reg.submit(r1, backbones(), owner="a:main").join(WAIT_S)
    reg.discard(r1)
    assert reg.owners() == {}, "a discarded job has no owner"
    reg.submit(r2, backbones(), owner="a:main").join(WAIT_S)
    reg.submit(r3, backbones(), owner="b:main").join(WAIT_S)
    assert reg.get(r2) is None, "keep=0: the finished job of r2 was evicted"
    assert "a:main" not in reg.owners() and reg.owners()["b:main"] == r3


def test_a_failing_liveness_check_keeps_the_owner(stub: StubEvaluation, tmp_path: Path) -> None:
    def broken(owner: str) -> bool:
        raise RuntimeError("no runtime")

    reg = registry.JobRegistry(is_alive=broken)
    r1 = request(20, tmp_path)
    reg.submit(r1, backbones(), owner="a:main").join(WAIT_S)
    assert reg.prune_owners() == 0 and reg.owners() == {"a:main": r1}


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
    runtime.active.clear()  # the session ended
    assert not sessions("tok:main") and not sessions("tok:compare"), "every slot of the ended session"
    assert sessions("other:main"), "an unregistered token is never pruned"
    runtime.active.add("sid-2")
    sessions.register("tok", "sid-2")  # the token seen again in a live session
    assert sessions("tok:main")


def test_dashboard_registers_its_session_and_the_registry_prunes_it(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    if BACKBONE not in state.backbone_choices():
        pytest.skip(f"{BACKBONE} is not bundled here")
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(jobs, "cached_task", lambda name: (_ for _ in ()).throw(rtcore.TaskUnavailableError("stub")))

    def script() -> None:
        import streamlit as st

        from app import backbones as bb
        from app import ui

        ui.init_session()
        ui.evaluate([bb.BackboneRef(st.session_state["test_backbone"])], slot="main")

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
        monkeypatch.setattr(Runtime, "_instance", FakeRuntime(set()))  # AppTest's session is not active
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
    assert recent.exists() and new.exists() and foreign.exists()
    assert not leftover.exists()


def test_an_upload_in_use_is_touched_and_kept(cache: Path, tmp_path: Path) -> None:
    path = bb.save_upload("mine.safetensors", checkpoint_bytes(tmp_path))
    age(path, 25 * 3600)
    ref = bb.upload_ref("resnet18", path, "mine.safetensors")  # every script run of a session using it
    assert time.time() - path.stat().st_mtime < 60
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
    assert str(info.value.__cause__) in str(info.value), "the checker's message reaches the user"
    assert stored(cache / "uploads") == [], "nothing refused is stored, no temporary is left"
    return str(info.value)


def test_truncated_safetensors_is_refused(cache: Path, tmp_path: Path) -> None:
    data = checkpoint_bytes(tmp_path)
    refused(cache, data[:-10], "truncated")


def test_garbage_json_header_is_refused(cache: Path) -> None:
    header = b"{this is: not json]"
    refused(cache, len(header).to_bytes(8, "little") + header + b"\0" * 16, "not JSON")


def test_header_claiming_120_mb_is_refused(cache: Path) -> None:
    n = 120 * 1000 * 1000
    msg = refused(cache, n.to_bytes(8, "little") + b'{"w": {}}' + b"\0" * 64, str(n))
    assert "limit" in msg


def test_header_that_does_not_tile_the_data_is_refused(cache: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    refused(cache, len(header).to_bytes(8, "little") + header + b"\0" * 8, "needs 16 bytes")
