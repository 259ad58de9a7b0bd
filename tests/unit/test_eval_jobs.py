"""Evaluation and transfer jobs (rtcore.runs.jobs) on a real scheduler: the planner's units in order, sessions
asking the same sharing one job and one executor, an added eps keeping the earlier rows, a snapshot that says
done holding every result, tables keys never shared, an unavailable task skipped, and one real tiny evaluation.

The executors are stubs that take no time (one test runs a real, tiny evaluation); the scheduler is the real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

import rtcore
from rtcore.config import eps_grid
from rtcore.models.ref import BackboneRef
from rtcore.runs import EvalJob, EvalRequest, Evaluation, Scheduler, Unit, UnitReport
from rtcore.runs.jobs import Executors

BACKBONE = "fmnist-cnn-standard"
WAIT_S = 20.0
UNITS = 5  # one task: fit, attack at 4/255, attack at the rest, head/loss at 4/255, head/loss at the rest


class Recorder:
    """What the stub executors did: every unit run (spec's n, stage, eps), in order; units of the n in ``hold``
    wait for ``release`` (reporting progress, so a cancel stops them); ``unavailable`` tasks raise."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[int, str, tuple[float, ...]]] = []
        self.release = threading.Event()
        self.hold: set[int] = set()
        self.unavailable: set[str] = set()
        self.created = 0
        self.gate_at: int | None = None  # the unit (by start order) that waits for ``release``
        self.on_tables: Callable[[], None] | None = None  # called while tables are built, after reading the rows

    def executor(self, spec, backbone=None, cache_dir=None) -> StubExecutor:  # noqa: ANN001
        with self.lock:
            self.created += 1
        return StubExecutor(self, spec)


class StubExecutor:
    """Stands in for rtcore.runs.Executor: runs a unit by recording it; its tables have one row per (task, eps)
    done, with head_attack once the head/loss unit ran."""

    def __init__(self, rec: Recorder, spec) -> None:  # noqa: ANN001
        self.rec, self.spec, self.version, self.rows = rec, spec, 0, {}

    def run(self, unit: Unit, progress) -> UnitReport:  # noqa: ANN001
        rec = self.rec
        if unit.task in rec.unavailable:
            raise rtcore.TaskUnavailableError(f"task {unit.task!r} needs a download")
        with rec.lock:
            first = not any(s[0] == unit.spec.n for s in rec.started)
            rec.started.append((unit.spec.n, unit.stage, unit.eps))
            gated = (first and unit.spec.n in rec.hold) or len(rec.started) - 1 == rec.gate_at
        progress(rtcore.ProgressEvent("feature attack", 0.5, unit.task))
        while gated and not rec.release.wait(0.005):
            progress(rtcore.ProgressEvent("feature attack", 0.5, unit.task))  # raises once cancelled
        for e in unit.eps or (0.0,):
            row = self.rows.setdefault((unit.task, e), {"head": False})
            row["head"] |= unit.stage == "head_loss"
        self.version += 1
        return UnitReport(unit, 0.0, True)

    def evaluation(self) -> Evaluation:
        s = self.spec
        rows = [{"backbone": s.backbone.display, "task": t, "probe": s.probe, "norm": s.norm, "eps": e, "n": s.n,
                 "robust_acc": 0.5, "head_attack": r["head"]} for (t, e), r in sorted(self.rows.items())]
        if self.rec.on_tables is not None:
            self.rec.on_tables()
        summary = pd.DataFrame(rows)
        samples = summary[["backbone", "task", "probe", "norm", "eps"]].assign(sample=0) if rows else pd.DataFrame()
        return Evaluation(summary, samples)


@pytest.fixture
def rec() -> Recorder:
    r = Recorder()
    yield r
    r.release.set()  # never leave a step waiting


def request(n: int, tmp_path: Path, tasks: tuple[str, ...] = ("shapes",), **kw: object) -> EvalRequest:
    return EvalRequest.over_grid([BackboneRef(BACKBONE)], tasks, "linf", n, "fast", first=(eps_grid("linf")[3],),
                                 cache_dir=str(tmp_path), **kw)


def make(rec: Recorder, pool: Executors | None = None):  # noqa: ANN201
    pool = pool or Executors(make=rec.executor)

    def factory(req: EvalRequest):  # noqa: ANN202
        return EvalJob.maker(req, {BackboneRef(BACKBONE): torch.nn.Identity()}, executors=pool)

    return factory


def test_units_follow_the_library_planner(rec: Recorder, tmp_path: Path) -> None:
    req = request(20, tmp_path)
    j = Scheduler().run(EvalJob(req, {BackboneRef(BACKBONE): torch.nn.Identity()},
                                executors=Executors(make=rec.executor)), timeout=WAIT_S)
    assert [(stage, eps) for _, stage, eps in rec.started] == [(u.stage, u.eps) for u in req.units()]
    assert rec.started[:2] == [(20, "fit", (0.0,)), (20, "attack", (eps_grid("linf")[3],))], "clean, then 4/255"
    snap = j.snapshot()
    assert snap.done and sorted(snap.summary["eps"]) == list(eps_grid("linf")) and not snap.preliminary
    assert [s.kind for s in j.steps][:2] == [("fast", BACKBONE, "fit"), ("fast", BACKBONE, "attack")]
    assert j.steps[1].work == 1 * 20 / 100, "attack work scales with the test points"


def test_sessions_asking_the_same_share_one_job_and_one_executor(rec: Recorder, tmp_path: Path) -> None:
    s, factory = Scheduler(), make(rec)
    req = request(20, tmp_path)
    got = [s.submit(req.key, factory(req), owner=f"s{i}:main") for i in range(12)]
    assert len({id(j) for j in got}) == 1 and s.created == 1 and rec.created == 1
    assert got[0].join(WAIT_S) and len(rec.started) == UNITS
    other = request(20, tmp_path, tasks=("shapes", "glyphs"))
    assert s.submit(other.key, factory(other)).join(WAIT_S) and rec.created == 2
    assert req.key != other.key and req.key == request(20, tmp_path).key, "keyed by what it computes"


def test_a_snapshot_that_says_done_holds_every_result(rec: Recorder, tmp_path: Path) -> None:
    """The classroom's 'All results ready: 5 tasks x 2 eps' above bars still computing: a page built its tables,
    the job ended meanwhile, and the page then read 'done'. A snapshot reads the state first, so the job ending
    while its tables are built leaves a snapshot that is not done (and the page reruns), never a done one that
    lacks results."""
    s, req = Scheduler(), request(20, tmp_path)
    rec.gate_at = UNITS - 1  # the last unit waits
    j = s.submit(req.key, make(rec)(req))
    deadline = time.monotonic() + WAIT_S
    while len(rec.started) < UNITS and time.monotonic() < deadline:
        time.sleep(0.005)

    def job_ends_now() -> None:
        rec.on_tables = None
        rec.release.set()
        assert j.join(WAIT_S)

    rec.on_tables = job_ends_now
    racing = j.snapshot()
    assert j.done and not racing.done and racing.preliminary, "built before the end: not done, so the page reruns"
    final = j.snapshot()
    assert final.done and len(final.summary) == len(eps_grid("linf")) and not final.preliminary


def test_an_added_eps_keeps_the_earlier_rows_on_screen(rec: Recorder, tmp_path: Path) -> None:
    s, factory = Scheduler(replace_delay=0), make(rec)
    a_req = request(40, tmp_path)
    a = s.submit(a_req.key, factory(a_req), owner="a:main")
    assert a.join(WAIT_S)
    rec.hold, rec.started = {40}, []  # hold the new job's first unit
    b_req = request(40, tmp_path, extras=[0.05])
    b = s.submit(b_req.key, factory(b_req), owner="a:main")
    assert b is not a and b.fallback is a and a.finished_tasks() == ["shapes"] and b.finished_tasks() == []
    deadline = time.monotonic() + WAIT_S
    while len(rec.started) < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sorted(b.snapshot().summary["eps"]) == list(eps_grid("linf")), "the grid's rows stay on screen"
    rec.release.set()
    assert b.join(WAIT_S)
    assert sorted(b.snapshot().summary["eps"]) == sorted([*eps_grid("linf"), 0.05])
    assert [x[1:] for x in rec.started][1:3] == [("attack", (eps_grid("linf")[3],)), ("attack", (0.05,))], \
        "the added eps right after the first look"


def test_tables_of_two_jobs_never_share_a_key(rec: Recorder, tmp_path: Path) -> None:
    """Figures are cached by the tables' key: two jobs whose executors reached the same version must differ."""
    s, factory = Scheduler(), make(rec)
    a_req, b_req = request(70, tmp_path), request(71, tmp_path)
    a, b = s.submit(a_req.key, factory(a_req)), s.submit(b_req.key, factory(b_req))
    assert a.join(WAIT_S) and b.join(WAIT_S)
    assert [ex.version for ex in a.executors] == [ex.version for ex in b.executors] == [UNITS]
    assert a.tables().key != b.tables().key and a.tables() is a.tables(), "built once per version"


def test_an_unavailable_task_is_skipped_and_left_out_of_the_export(rec: Recorder, tmp_path: Path) -> None:
    rec.unavailable = {"mnist"}
    req = request(20, tmp_path, tasks=("shapes", "mnist"))
    j = Scheduler().run(make(rec)(req)(None, 0.0), timeout=WAIT_S)
    state = j.state()
    assert state.phase == "done" and not state.errors
    assert [(group[1], type(e)) for group, e in state.skipped] == [("mnist", rtcore.TaskUnavailableError)]
    assert set(j.snapshot().summary["task"]) == {"shapes"}
    assert [tasks for _, tasks in j.export()[2]] == [("shapes",)], "the export names only computed tasks"
    assert j.finished_tasks() == ["shapes"]


def test_a_real_tiny_job_finishes_with_the_librarys_tables(tmp_path: Path) -> None:
    if BACKBONE not in rtcore.list_backbones():
        pytest.skip(f"{BACKBONE} is not bundled here")
    ref = BackboneRef(BACKBONE)
    req = EvalRequest.over_grid([ref], ["shapes"], "linf", 20, "fast", cache_dir=str(tmp_path / "cache"))
    j = Scheduler().run(EvalJob(req, {ref: ref.create("cpu")}), timeout=300)
    snap = j.snapshot()
    assert snap.done and not snap.errors and j.state().computed == len(j.steps) == 3  # fit, attack, head/loss
    assert sorted(snap.summary["eps"]) == list(eps_grid("linf"))
    assert (snap.summary["bound"] <= snap.summary["bound_head"] + 1e-12).all()
    again = Scheduler().run(EvalJob(req, {ref: ref.create("cpu")}, executors=Executors()), timeout=300)
    assert again.state().computed == 0, "a second process reads every unit from the disk cache"
