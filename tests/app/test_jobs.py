"""The dashboard's side of the scheduler (app/jobs.py): a page reruns when the job it drew has advanced (at once for
its first results and at the end), its progress line names the step, the stage and the measured time left, owners
of ended sessions are pruned, and checkpoint uploads live in the cache folder and expire.

The scheduler and its jobs are tested in tests/unit/test_scheduler.py and tests/unit/test_eval_jobs.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
import stat
import time
from pathlib import Path
from unittest.mock import MagicMock

import pytest
import torch
from safetensors.torch import save_file
from streamlit.runtime import Runtime
from streamlit.testing.v1 import AppTest

import rtcore
from app import jobs, state
from rtcore.config import default_cache_dir
from rtcore.models.uploads import CheckpointUploadError, checkpoint_ref, checkpoint_upload_dir, load_ref, \
    save_checkpoint_upload
from rtcore.runs import Job, ProgressEvent, Scheduler, Step

BACKBONE = "fmnist-cnn-standard"
WAIT_S = 20.0


# ---------------------------------------------------------------- following a job

def finished_job(n: int = 2) -> Job:
    steps = [Step(("fast", "cnn", "attack"), 1.0, lambda report: None, what=f"s{i}") for i in range(n)]
    return Scheduler().run(Job("k", steps), timeout=WAIT_S)


def test_a_page_reruns_when_the_job_moved_on_and_at_once_at_the_end() -> None:
    j = finished_job()
    done = j.state()
    assert not jobs.rerun_due(done, done.version, eager=False, since=0.0), "the page shows the finished job"
    assert jobs.rerun_due(done, done.version - 1, eager=False, since=0.0), "a session that joined while it ran"
    running = replace(done, phase="running")
    assert not jobs.rerun_due(running, running.version, eager=True, since=99.0), "nothing new: no rerun"
    assert jobs.rerun_due(running, running.version - 1, eager=True, since=0.0), "the first results at once"
    assert not jobs.rerun_due(running, running.version - 1, eager=False, since=1.0), "then at most every few s"
    assert jobs.rerun_due(running, running.version - 1, eager=False, since=jobs.RERUN_GAP_S)


class Shown(Job):
    """A job whose snapshot is its state (what first_snapshot reads)."""

    def snapshot(self):  # noqa: ANN201
        return self.state()


def test_a_page_with_nothing_to_show_waits_briefly_for_the_first_results() -> None:
    """A warm cache answers at once: the page draws its first step's results in the same run; a computing job is
    not waited for longer than FIRST_WAIT_S (the page shows its empty frame and follows the job)."""
    import threading

    for answers_in in (0.05, None):
        go = threading.Event()
        step = Step(("fast", "cnn", "attack"), 1.0, lambda report, go=go: go.wait(WAIT_S), what="s0")
        job = Scheduler().submit("k", lambda old, delay, step=step: Shown("k", [step]))
        first = job.snapshot()
        timer = threading.Timer(answers_in, go.set) if answers_in is not None else None
        if timer is not None:
            timer.start()
        got = jobs.first_snapshot(job, first)
        if answers_in is None:
            assert got is first, "still computing after FIRST_WAIT_S: the page draws what it has"
        else:
            assert got.version > first.version and got.done, "the warm step's results, in this run"
        go.set()
        assert job.join(WAIT_S)


def test_the_progress_line_names_the_step_the_stage_and_the_measured_time_left() -> None:
    j = finished_job(3)
    st = j.state()
    p = ProgressEvent("feature attack", 0.4, done=1, total=3, seconds=63.0, left=None)
    waiting = replace(st, phase="running", step=1, what="s1", progress=p)
    text = jobs.progress_text(waiting, str)
    assert text == ("step 2/3 · s1 · feature attack (Δ) · 63 s elapsed, "
                    "time left: measured after the first computed step")
    measured = replace(waiting, progress=ProgressEvent("", 0.4, total=3, seconds=63.0, left=95.0))
    assert jobs.progress_text(measured, str).endswith("· checking the cache · 63 s elapsed, about 1 min 35 s left")
    queued = replace(measured, phase="waiting", others=2)
    assert "waiting for the device: 2 other jobs take turns with it" in jobs.progress_text(queued, str)


def test_an_error_message_names_the_librarys_words_or_points_to_the_log() -> None:
    assert jobs.error_message(ValueError("n=0 must be >= 1")) == "n=0 must be >= 1"
    assert jobs.error_message(KeyError("x")).startswith("Unexpected error (KeyError)")


# ---------------------------------------------------------------- owners of ended sessions

class FakeRuntime:
    def __init__(self, active: set[str]) -> None:
        self.active = active

    def is_active_session(self, session_id: str) -> bool:
        return session_id in self.active


def test_an_owner_lives_as_long_as_its_streamlit_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Runtime, "_instance", None)
    assert jobs.session_alive("sid-1|tok:main"), "no runtime (plain Python): alive"
    monkeypatch.setattr(Runtime, "_instance", MagicMock(spec=Runtime))
    assert jobs.session_alive("sid-1|tok:main"), "AppTest's mock runtime cannot tell: alive"
    runtime = FakeRuntime({"sid-1"})
    monkeypatch.setattr(Runtime, "_instance", runtime)
    assert jobs.session_alive("sid-1|tok:main") and not jobs.session_alive("sid-2|tok:main")
    runtime.active.clear()
    assert not jobs.session_alive("sid-1|tok:main") and not jobs.session_alive("sid-1|tok:compare"), "every slot"
    monkeypatch.setattr(FakeRuntime, "is_active_session", lambda self, sid: 1 / 0)
    assert jobs.session_alive("sid-1|tok:main"), "a runtime that cannot answer: alive"


def test_the_scheduler_forgets_the_owners_of_an_ended_session(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    if BACKBONE not in state.backbone_choices():
        pytest.skip(f"{BACKBONE} is not bundled here")
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path / "cache"))

    def script() -> None:
        import streamlit as st

        from app import ui
        from rtcore.models.ref import BackboneRef

        ui.init_session()
        ui.follow(ui.evaluate([BackboneRef(st.session_state["test_backbone"])], slot="main"))

    at = AppTest.from_function(script, default_timeout=120)
    token = f"test-{os.getpid()}-{time.monotonic_ns()}"
    for k, v in {"session_token": token, "tasks": ["shapes"], "n": 20, "attack": "fast",
                 "test_backbone": BACKBONE}.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("All results ready" in c.value for c in at.caption), "no server: the page waited for its job"
    (owner,) = [o for o in jobs.SCHEDULER.owners() if o.endswith(f"|{token}:main")]
    key = jobs.SCHEDULER.owners()[owner]
    try:
        monkeypatch.setattr(Runtime, "_instance", None)
        jobs.SCHEDULER.prune_owners()
        assert owner in jobs.SCHEDULER.owners(), "no runtime: the owner is kept"
        monkeypatch.setattr(Runtime, "_instance", FakeRuntime(set()))
        jobs.SCHEDULER.prune_owners()
        assert owner not in jobs.SCHEDULER.owners(), "its Streamlit session ended: the owner is gone"
    finally:
        jobs.SCHEDULER.discard(key)


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
    path = save_checkpoint_upload("my model.safetensors", data)
    assert checkpoint_upload_dir() == default_cache_dir() / "uploads" == cache / "uploads"
    assert path.parent == cache / "uploads" and path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stored(path.parent) == [path], "no temporary left behind"


def test_unused_uploads_are_pruned_on_save(cache: Path, tmp_path: Path) -> None:
    folder = cache / "uploads"
    old = save_checkpoint_upload("old.safetensors", checkpoint_bytes(tmp_path, "a.safetensors"))
    recent = save_checkpoint_upload("recent.safetensors", checkpoint_bytes(tmp_path, "b.safetensors"))
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
    new = save_checkpoint_upload("new.safetensors", src.read_bytes())
    assert not old.exists(), "unused for more than 24 hours"
    assert recent.exists() and new.exists() and foreign.exists() and not leftover.exists()


def test_an_upload_in_use_is_touched_and_kept(cache: Path, tmp_path: Path) -> None:
    path = save_checkpoint_upload("mine.safetensors", checkpoint_bytes(tmp_path))
    age(path, 25 * 3600)
    ref = checkpoint_ref("resnet18", path, "mine.safetensors")  # every script run of a session using it
    assert time.time() - path.stat().st_mtime < 60
    assert ref.display == "timm:resnet18 + mine.safetensors" and ref.weights == str(path)
    age(path, 25 * 3600)
    with pytest.raises(rtcore.CheckpointError):  # the wrong architecture, but the file was used
        load_ref(ref, device="cpu")
    assert time.time() - path.stat().st_mtime < 60
    src = tmp_path / "other.safetensors"
    save_file({"v": torch.ones(5)}, str(src))
    save_checkpoint_upload("other.safetensors", src.read_bytes())
    assert path.exists()
    age(path, 25 * 3600)
    save_checkpoint_upload("other.safetensors", src.read_bytes())
    assert not path.exists()
    with pytest.raises(CheckpointUploadError, match="upload it again"):
        checkpoint_ref("resnet18", path, "mine.safetensors")


def test_a_reupload_refreshes_the_stored_file(cache: Path, tmp_path: Path) -> None:
    data = checkpoint_bytes(tmp_path)
    path = save_checkpoint_upload("mine.safetensors", data)
    age(path, 25 * 3600)
    assert save_checkpoint_upload("mine.safetensors", data) == path
    assert path.exists() and time.time() - path.stat().st_mtime < 60


def refused(cache: Path, data: bytes, match: str) -> str:
    with pytest.raises(CheckpointUploadError, match=match) as info:
        save_checkpoint_upload("model.safetensors", data)
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
