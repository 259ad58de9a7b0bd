"""The scheduler (rtcore.runs.scheduler) with real worker threads: jobs shared by key, steps of concurrent jobs
taking turns on the device, progress that never goes back, the time left from measured unit times, failures
kept as values, owners replacing and releasing jobs, and listeners called when a job advances and when it ends.

The steps are tiny Python functions gated by events, so every test is fast and exact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from rtcore.runs import Job, ProgressEvent, Scheduler, Step, TimeLeft
from rtcore.runs.progress import PRIOR_COST
from rtcore.runs.scheduler import Cancelled

WAIT_S = 10.0


class Gate:
    """Steps that record when they run and, while ``closed``, wait (reporting progress, so a cancel stops them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[str] = []
        self.active = self.max_active = 0
        self.opened = threading.Event()

    def step(self, name: str, kind: str = "attack", work: float = 1.0, hold: bool = False,
             error: BaseException | None = None, group: object = None, fractions: tuple[float, ...] = (0.5,),
             computed: bool = True) -> Step:
        def run(report: Callable[[ProgressEvent], None]) -> object:
            with self.lock:
                self.log.append(name)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            try:
                for f in fractions:
                    report(ProgressEvent("attack", f))
                while hold and not self.opened.wait(0.005):
                    report(ProgressEvent("attack", fractions[-1]))
                if error is not None:
                    raise error
                return Result(name, computed)
            finally:
                with self.lock:
                    self.active -= 1

        return Step(("fast", "cnn", kind), work, run, what=name, group=group)


class Result:
    def __init__(self, name: str, computed: bool) -> None:
        self.name, self.computed = name, computed


def job(key: object, steps: list[Step], **kw: object) -> Callable[[Job | None, float], Job]:
    return lambda old, delay: Job(key, steps, delay=delay, **kw)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


@pytest.fixture
def gate() -> Gate:
    g = Gate()
    yield g
    g.opened.set()  # never leave a worker waiting


# ---------------------------------------------------------------- sharing and the device

def test_callers_asking_the_same_key_share_one_job(gate: Gate) -> None:
    s = Scheduler()
    got = [s.submit("k", job("k", [gate.step("a"), gate.step("b")]), owner=f"s{i}:main") for i in range(12)]
    assert len({id(j) for j in got}) == 1 and s.created == 1
    assert got[0].join(WAIT_S) and gate.log == ["a", "b"], "computed once for twelve callers"
    assert s.submit("k", job("k", [gate.step("again")])) is got[0], "a finished job is served as it is"
    assert [r.name for r in got[0].results] == ["a", "b"]


def test_steps_of_concurrent_jobs_take_turns_one_at_a_time(gate: Gate) -> None:
    s = Scheduler(slots=1)
    a = s.submit("a", job("a", [gate.step("a1", hold=True), gate.step("a2"), gate.step("a3")]))
    assert wait_until(lambda: gate.log == ["a1"])
    b = s.submit("b", job("b", [gate.step("b1"), gate.step("b2"), gate.step("b3")]))
    assert wait_until(lambda: b.state().phase == "waiting") and b.state().others == 1
    gate.opened.set()
    assert a.join(WAIT_S) and b.join(WAIT_S)
    assert gate.log == ["a1", "b1", "a2", "b2", "a3", "b3"], "round robin, first come first served"
    assert gate.max_active == 1, "one step on the device at a time"


def test_two_slots_run_two_steps_at_once_and_no_more(gate: Gate) -> None:
    s = Scheduler(slots=2)
    jobs = [s.submit(k, job(k, [gate.step(f"{k}1", hold=True), gate.step(f"{k}2")])) for k in "abc"]
    assert wait_until(lambda: gate.max_active == 2)
    time.sleep(0.05)
    assert gate.active == 2, "the third job waits for a slot"
    gate.opened.set()
    assert all(j.join(WAIT_S) for j in jobs) and gate.max_active == 2


def test_a_replaced_request_is_stopped_unless_another_owner_follows_it(gate: Gate) -> None:
    s = Scheduler(replace_delay=0.0)
    old = s.submit("r1", job("r1", [gate.step("r1", hold=True), gate.step("r1b")]), owner="a:main")
    assert wait_until(lambda: gate.log == ["r1"])
    s.submit("r1", job("r1", []), owner="b:main")
    s.submit("r2", job("r2", [gate.step("r2")]), owner="a:main")
    assert not old.cancelled, "b still follows r1"
    new = s.submit("r3", job("r3", [gate.step("r3")]), owner="b:main")
    assert old.cancelled and s.owners() == {"a:main": "r2", "b:main": "r3"}
    assert old.join(WAIT_S) and old.state().phase == "cancelled"
    assert "r1b" not in gate.log, "a cancelled job starts no further step"
    assert new.join(WAIT_S) and s.get("r1") is old
    assert s.submit("r1", job("r1", [gate.step("r1 again")])) is not old, "a cancelled job is started afresh"


def test_a_burst_of_changes_runs_only_the_last(gate: Gate) -> None:
    """Four changes in a row (a slider dragged): only the last one computes. The delay leaves room for a loaded
    machine that stalls this thread between two submissions (0.3 s once let a replaced job start)."""
    s = Scheduler(replace_delay=2.0)
    first = s.submit("n30", job("n30", [gate.step("n30")]), owner="a:main")
    assert first.join(WAIT_S)
    burst = [s.submit(f"n{n}", job(f"n{n}", [gate.step(f"n{n}")]), owner="a:main") for n in (31, 32, 33, 34)]
    assert burst[-1].join(WAIT_S)
    assert all(j.join(WAIT_S) and j.cancelled and j.state().computed == 0 for j in burst[:-1])
    assert gate.log == ["n30", "n34"]


def test_owners_of_ended_sessions_are_forgotten(gate: Gate) -> None:
    alive = {"a", "b"}
    s = Scheduler(replace_delay=0.0, is_alive=lambda o: o.split(":")[0] in alive)
    j1 = s.submit("r1", job("r1", [gate.step("r1", hold=True)]), owner="a:main")
    s.submit("r1", job("r1", []), owner="b:main")
    alive.discard("a")
    s.submit("r2", job("r2", [gate.step("r2")]), owner="b:main")
    assert s.owners() == {"b:main": "r2"} and j1.cancelled, "nobody follows r1 any more"
    s.is_alive = lambda o: 1 / 0  # a check that cannot answer keeps its owners
    assert s.prune_owners() == 0 and s.owners() == {"b:main": "r2"}


def test_finished_jobs_beyond_keep_are_dropped_with_their_owners(gate: Gate) -> None:
    s = Scheduler(keep=1)
    for k in ("r1", "r2", "r3"):
        assert s.submit(k, job(k, [gate.step(k)]), owner=f"{k}:main").join(WAIT_S)
    r4 = s.submit("r4", job("r4", [gate.step("r4", hold=True)]))
    assert [j.key for j in s.jobs()] == ["r3", "r4"], "the last finished job and the running one"
    assert s.owners() == {"r3:main": "r3"}, "the owners of dropped jobs went with them"
    s.discard("r4")
    assert s.get("r4") is None and r4.join(WAIT_S) and r4.cancelled


# ---------------------------------------------------------------- progress and the time left

def test_progress_never_goes_back_and_counts_steps(gate: Gate) -> None:
    s = Scheduler()
    steps = [gate.step(f"s{i}", fractions=(0.6, 0.2, 0.9), work=w) for i, w in enumerate((1.0, 3.0, 0.0, 2.0))]
    seen: list[ProgressEvent] = []
    j = s.submit("p", job("p", steps))
    while not j.done:
        seen.append(j.state().progress)
    seen.append(j.state().progress)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [p.done for p in seen] == sorted(p.done for p in seen) and seen[-1].done == seen[-1].total == 4


def test_the_time_left_is_the_measured_unit_times() -> None:
    clock, attack, fit = TimeLeft(), ("fast", "cnn", "attack"), ("fast", "cnn", "fit")
    assert clock.left([(attack, 2.0)]) is None, "nothing measured: no guess"
    clock.record(attack, 2.0, 6.0)
    clock.record(attack, 1.0, 3.0)
    clock.record(fit, 1.0, 99.0, computed=False)  # all cached: only the overhead
    assert clock.rate(attack) == 3.0 and clock.cached_seconds() == 99.0
    assert clock.left([(attack, 4.0), (attack, 1.0)]) == 15.0
    assert clock.left([(fit, 1.0)]) == pytest.approx(3.0 * PRIOR_COST["fit"]), "a measured stage scaled by the prior"
    assert clock.left([(("fast", "resnet", "attack"), 1.0)]) == 3.0, "another backbone: this one's stage rate"
    assert clock.left([(("strong", "cnn", "attack"), 1.0)]) is None, "another strength is never guessed from this one"
    assert clock.left([(("fast", "resnet", "fit"), 1.0)]) is None, "nor a stage no backbone has measured"
    assert clock.left([(attack, 2.0)], running=[(attack, 1.0, 1.0)]) == 2.0 + 6.0
    # a running unit past its expected time: it has nothing left, and it raises its kind's rate at once
    assert clock.left([(attack, 2.0)], running=[(attack, 1.0, 5.0)]) == 10.0
    assert clock.left([(attack, 4.0)], slots=2) == 6.0 and clock.left([], [(attack, 2.0, 0.0)], slots=4) == 6.0


def test_a_jobs_time_left_counts_the_steps_of_other_jobs_before_its_end(gate: Gate) -> None:
    s = Scheduler()
    for k, seconds in (("fit", 2.0), ("attack", 5.0)):
        s.clock.record(("fast", "cnn", k), 1.0, seconds)
    a = s.submit("a", job("a", [gate.step("a1", hold=True, kind="fit"), gate.step("a2", kind="attack")]))
    assert wait_until(lambda: gate.log == ["a1"])
    b = s.submit("b", job("b", [gate.step("b1", kind="attack"), gate.step("b2", kind="attack")]))
    left_a, left_b = a.state().progress.left, b.state().progress.left
    # a: the rest of a1 (<= 2 s), then b1 (5 s), then a2 (5 s); b: a1's rest, b1, a2, b2
    assert 10.0 <= left_a <= 12.0 and left_b == pytest.approx(left_a + 5.0, abs=0.05)
    gate.opened.set()
    assert a.join(WAIT_S) and b.join(WAIT_S)
    assert a.state().progress.left is None, "no time left once done"


def test_the_estimate_rises_smoothly_while_a_step_overruns() -> None:
    """'63 s left' at 63 s then '77 s left' at 173 s: the estimate must not wait for the step to end to rise."""
    s = Scheduler()
    s.clock.record(("fast", "cnn", "attack"), 1.0, 0.05)
    release = threading.Event()

    def slow(report: Callable[[ProgressEvent], None]) -> None:
        release.wait(WAIT_S)

    attack = ("fast", "cnn", "attack")
    j = s.submit("slow", job("slow", [Step(attack, 1.0, slow), Step(attack, 1.0, lambda r: None)]))
    time.sleep(0.25)
    early = j.state().progress.left
    time.sleep(0.25)
    late = j.state().progress.left
    release.set()
    assert j.join(WAIT_S)
    assert early is not None and early >= 0.2, "the overrunning step's pace is the rate of the step after it"
    assert late >= early + 0.2


def test_the_estimated_end_never_jumps_up_when_a_unit_ends() -> None:
    """'63 s left' at 63 s, then '77 s left' at 173 s: a classroom job (5 tasks: fits, attacks, then head/loss
    units) whose head/loss units cost twice what the prior says. The estimated end may rise while a unit overruns
    (continuously: the overrun is the measurement), but never jumps up when a unit ends, and once a unit of every
    stage has finished it is exact (the costs here are fixed)."""
    cost = {"fit": 14.0, "attack": 4.0, "head_loss": 2 * 4.0 * PRIOR_COST["head_loss"]}  # per unit of work
    units = [("fit", 1.0)] * 5 + [("attack", 2.0)] * 5 + [("attack", 8.0)] * 5 + [("head_loss", 2.0)] * 10
    clock, t = TimeLeft(), 0.0

    def end(i: int, elapsed: float) -> float | None:
        name, work = units[i]
        left = clock.left([(("fast", "cnn", n), w) for n, w in units[i + 1:]], [(("fast", "cnn", name), work, elapsed)])
        return None if left is None else t + elapsed + left

    rises, exact = [], []
    for i, (name, work) in enumerate(units):
        d = cost[name] * work
        before = end(i, d - 1e-9)
        clock.record(("fast", "cnn", name), work, d)
        t += d
        after = end(i + 1, 0.0) if i + 1 < len(units) else t
        if before is not None:
            rises.append(after - before)
        if {k[2] for k in clock.measured()} == set(cost):
            exact.append(after)
    assert len(rises) == len(units) - 1 and max(rises) <= 1e-6, "no jump up when a unit ends"
    assert exact and all(e == pytest.approx(t) for e in exact), "exact once every stage was measured"


# ---------------------------------------------------------------- failures, cancelling, listeners

def test_a_failing_step_ends_the_job_with_its_error(gate: Gate) -> None:
    s = Scheduler()
    boom = RuntimeError("boom")
    j = s.submit("f", job("f", [gate.step("ok"), gate.step("bad", error=boom), gate.step("never")]))
    assert j.join(WAIT_S)
    st = j.state()
    assert st.failed and st.errors == (boom,) and gate.log == ["ok", "bad"]
    after = s.submit("g", job("g", [gate.step("next")]))
    assert after.join(WAIT_S) and after.state().phase == "done", "the worker goes on after a failure"


def test_a_tolerated_error_skips_only_its_group(gate: Gate) -> None:
    s = Scheduler()
    missing = LookupError("no data for mnist")
    steps = [gate.step("mnist fit", group="mnist", error=missing), gate.step("shapes fit", group="shapes"),
             gate.step("mnist attack", group="mnist"), gate.step("shapes attack", group="shapes")]
    j = s.submit("t", job("t", steps, tolerate=(LookupError,)))
    assert j.join(WAIT_S)
    st = j.state()
    assert st.phase == "done" and st.skipped == (("mnist", missing),) and not st.errors
    assert gate.log == ["mnist fit", "shapes fit", "shapes attack"]


def test_a_cancelled_step_stops_at_its_next_report(gate: Gate) -> None:
    s = Scheduler()
    j = s.submit("c", job("c", [gate.step("held", hold=True), gate.step("after")]))
    assert wait_until(lambda: gate.log == ["held"])
    j.cancel()
    assert j.join(WAIT_S) and j.state().phase == "cancelled" and gate.log == ["held"]
    assert j.results == [None, None]
    with pytest.raises(Cancelled):
        j._report(ProgressEvent("attack", 0.1))


def test_listeners_fire_when_the_job_advances_and_when_it_ends(gate: Gate) -> None:
    s = Scheduler()
    heard: list[tuple[int, bool]] = []
    j = s.submit("l", job("l", [gate.step("one", hold=True), gate.step("two"), gate.step("three")]))
    j.listen(lambda job: heard.append((job.version, job.done)))
    v0 = j.version
    gate.opened.set()
    assert j.wait(v0, WAIT_S) and j.join(WAIT_S)
    assert wait_until(lambda: len(heard) == 3)
    assert heard == [(v0 + 1, False), (v0 + 2, False), (v0 + 3, True)], "one call per step, the last once done"
    late: list[int] = []
    j.listen(lambda job: late.append(job.version))
    assert late == [j.version], "a listener added after the end is called at once"


def test_cached_steps_do_not_count_as_measured(gate: Gate) -> None:
    s = Scheduler()
    j = s.submit("c", job("c", [gate.step("cached", computed=False), gate.step("computed")]))
    assert j.join(WAIT_S) and j.state().computed == 1
    assert list(s.clock.measured()) == [("fast", "cnn", "attack")]


def test_bad_slots_are_refused() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="slots"):
            Scheduler(slots=bad)  # type: ignore[arg-type]
