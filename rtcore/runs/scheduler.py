"""One scheduler for the computations of a process: jobs of steps, shared by what they compute, run by worker
threads that take turns on the device.

A :class:`Job` is an ordered list of :class:`Step` (a planned unit, a transfer method, a sweep unit) under a
key naming what it computes. :meth:`Scheduler.submit` returns the job a key already has (running or finished)
or starts the one its factory makes, so every caller asking for the same computation shares one job: a class
of twelve browsers opening the same page is served by one computation.

``slots`` worker threads take the next step of the waiting jobs in turn (first come, first served, round
robin), so the steps of concurrent jobs interleave and at most ``slots`` steps compute at once: the device
lock. Each step's seconds feed one :class:`~rtcore.runs.progress.TimeLeft` of the scheduler, so a job's time
left is measured from unit times, counting the steps of other jobs that run before its own finish.

A job's :attr:`Job.version` changes when a step finishes and when the job ends; :meth:`Job.wait` blocks until
it does, and listeners added with :meth:`Job.listen` are called then (in the worker thread), so whoever shows a
job can redraw exactly when there is something new. A step that raises one of the job's ``tolerate`` errors
skips the later steps of its group (e.g. the units of a task whose data is not available); any other error
ends the job and is kept as a value (:attr:`JobState.errors`), never raised into the worker.

Owners: ``owner`` names who asks (a session's page). A newer request of the same owner replaces its older one,
which is stopped unless another owner asks for it, and starts after ``replace_delay`` seconds so that a burst
of changes runs only the last; ``is_alive(owner)`` lets the owners of ended sessions be forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from .job import Cancelled, Job, JobState, Step
from .progress import ProgressEvent, TimeLeft

log = logging.getLogger(__name__)

#: seconds a job that replaces an owner's earlier request waits before its first step
REPLACE_DELAY_S = 0.6
#: seconds an idle worker thread waits for work before it ends (the next job starts a new one)
IDLE_S = 30.0


class Scheduler:
    """Jobs by key, shared; ``slots`` worker threads on the device (see the module docstring).

    ``keep``: finished jobs kept (least recently asked for out); ``is_alive(owner)``: whether an owner still
    exists (a check that raises counts as alive); ``replace_delay``: seconds a job that replaces an owner's
    earlier request waits before its first step; ``clock``: the measured unit times (``clock.left(workload)``
    estimates a workload not submitted yet)."""

    def __init__(self, slots: int = 1, *, keep: int = 32, is_alive: Callable[[str], bool] | None = None,
                 replace_delay: float = REPLACE_DELAY_S, clock: TimeLeft | None = None) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots={slots!r} must be a whole number >= 1 (steps computing at once)")
        self.slots, self.keep, self.replace_delay = slots, keep, replace_delay
        self.clock = clock or TimeLeft()
        self.is_alive = is_alive
        self.created = 0
        self._cond = threading.Condition()
        self._jobs: OrderedDict[Hashable, Job] = OrderedDict()
        self._owners: dict[str, Hashable] = {}
        self._queue: deque[Job] = deque()
        self._running: list[Job] = []
        self._workers: list[threading.Thread] = []

    # -- asking
    def submit(self, key: Hashable, make: Callable[[Job | None, float], Job], owner: str | None = None) -> Job:
        """The job of ``key``: the one held (running or finished, not cancelled), or ``make(previous, delay)``
        started now (``previous``: the owner's job it replaces, or None; ``delay``: seconds to wait first)."""
        self.prune_owners()
        with self._cond:
            prev_key = self._owners.get(owner) if owner is not None else None
            old = self._jobs.get(prev_key) if prev_key is not None and prev_key != key else None
            job = self._jobs.get(key)
            if job is None or job.cancelled:
                job = make(old, self.replace_delay if old is not None else 0.0)
                if job.key != key:
                    raise ValueError(f"the factory made a job for {job.key!r}, not for {key!r}")
                self._start(job)
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            if owner is not None:
                self._owners[owner] = key
                if old is not None and not old.done and not self._followed(prev_key, owner):
                    old.cancel()
            self._evict()
            return job

    def run(self, job: Job, timeout: float | None = None) -> Job:
        """Submit ``job`` under its key (sharing a running one of the same key) and wait for it to end."""
        got = self.submit(job.key, lambda old, delay: job)
        got.join(timeout)
        return got

    def get(self, key: Hashable) -> Job | None:
        with self._cond:
            return self._jobs.get(key)

    def jobs(self) -> list[Job]:
        """The jobs held, least recently asked for first."""
        with self._cond:
            return list(self._jobs.values())

    def discard(self, key: Hashable) -> None:
        """Forget a job (and stop it), so that the next submit of ``key`` starts it again."""
        with self._cond:
            job = self._jobs.pop(key, None)
            self._drop_orphans()
        if job is not None:
            job.cancel()

    def owners(self) -> dict[str, Hashable]:
        with self._cond:
            return dict(self._owners)

    def prune_owners(self) -> int:
        """Forget owners that ended (``is_alive`` False) or whose job is gone; return how many."""
        with self._cond:
            owners = dict(self._owners)
        ended = {o for o in owners if not self._alive(o)}  # outside the lock: the check may be slow
        with self._cond:
            gone = [o for o, k in self._owners.items() if k not in self._jobs or (o in ended and owners.get(o) == k)]
            for o in gone:
                del self._owners[o]
        return len(gone)

    # -- inside
    def _alive(self, owner: str) -> bool:
        if self.is_alive is None:
            return True
        try:
            return bool(self.is_alive(owner))
        except Exception:  # noqa: BLE001 - a liveness check that cannot answer keeps the owner
            log.exception("owner liveness check failed for %r", owner)
            return True

    def _followed(self, key: Hashable, owner: str) -> bool:
        return any(k == key for o, k in self._owners.items() if o != owner)

    def _evict(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.done]
        for k in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[k]
        self._drop_orphans()

    def _drop_orphans(self) -> None:
        for o in [o for o, k in self._owners.items() if k not in self._jobs]:
            del self._owners[o]

    def _start(self, job: Job) -> None:
        """Queue ``job`` (lock held) and make sure the workers run."""
        if job._scheduler is not None:
            raise ValueError(f"job #{job.id} was already submitted")
        job._scheduler = self
        job._t0 = time.monotonic()
        job._not_before = job._t0 + job._delay
        self.created += 1
        if not job.steps:
            self._finish(job, "done")
            return  # (no listener can have been added yet)
        self._queue.append(job)
        while len(self._workers) < self.slots:
            t = threading.Thread(target=self._work, name=f"rtcore-scheduler-{len(self._workers) + 1}", daemon=True)
            self._workers.append(t)
            t.start()
        self._cond.notify_all()

    def _cancelled(self, job: Job) -> None:
        with self._cond:
            if job not in self._queue:
                return  # running (it stops at its next report) or ended
            self._queue.remove(job)
            listeners = self._finish(job, "cancelled")
        _call(listeners, job)

    def _finish(self, job: Job, phase: str) -> list[Callable[[Job], None]]:
        """End ``job`` (lock held); its listeners, to call after the lock is released."""
        job._phase, job._t_end = phase, time.monotonic()
        job._version += 1
        self._cond.notify_all()
        listeners, job._listeners = job._listeners, []
        return listeners

    def _next(self) -> Job | None:
        """The first queued job whose delay has passed (lock held; waits for one, None after :data:`IDLE_S`
        without any)."""
        idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            ready = next((j for j in self._queue if j._not_before <= now), None)
            if ready is not None:
                self._queue.remove(ready)
                return ready
            if not self._queue and now - idle_since >= IDLE_S:
                return None
            soonest = min((j._not_before for j in self._queue), default=now + IDLE_S)
            self._cond.wait(max(soonest - now, 0.001))

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                job = self._next()
                if job is None:
                    self._workers.remove(me)
                    return
                step = job.steps[job._pos]
                job._running, job._phase, job._step_t0 = True, "running", time.monotonic()
                job._fraction, job._stage, job._task = 0.0, "", None
                self._running.append(job)
            result, error = job._run_step(step) if not job.cancelled else (None, Cancelled())
            seconds = time.monotonic() - job._step_t0
            computed = error is None and bool(getattr(result, "computed", True))
            if error is None:
                self.clock.record(step.kind, step.work, seconds, computed)
            elif not isinstance(error, Cancelled) and not isinstance(error, job.tolerate):
                log.error("step %d of job #%d (%r) failed", job._pos + 1, job.id, step.what, exc_info=error)
            with self._cond:
                self._running.remove(job)
                job._running = False
                listeners = self._advance(job, step, result, error, computed)
            _call(listeners, job)

    def _advance(self, job: Job, step: Step, result: Any, error: BaseException | None,
                 computed: bool) -> list[Callable[[Job], None]]:
        """Record a finished step and queue the job's next one, or end the job (lock held); the listeners."""
        job.results[job._pos] = result
        job._computed += int(computed)
        phase = None
        if isinstance(error, Cancelled) or job.cancelled:
            phase = "cancelled"
        elif error is not None and isinstance(error, job.tolerate):
            job._skipped.append((step.group, error))
        elif error is not None:
            job._errors.append(error)
            phase = "failed"
        job._pos += 1
        job._fraction = 0.0
        job._skip_done_groups()
        if phase is None and job._pos >= len(job.steps):
            phase = "done"
        if phase is not None:
            return self._finish(job, phase)
        job._phase = "waiting"
        job._version += 1
        self._queue.append(job)
        self._cond.notify_all()
        return list(job._listeners)

    def _state(self, job: Job) -> JobState:
        """The state of ``job`` (lock held)."""
        pos = min(job._pos, len(job.steps) - 1) if job.steps else 0
        left = None if job.done else self._left(job)
        progress = ProgressEvent(job._stage if job._running else "", job._job_fraction(), job._task,
                                 done=min(job._pos, len(job.steps)), total=len(job.steps), seconds=job.elapsed(),
                                 left=left)
        others = len({id(j) for j in (*self._running, *self._queue)} - {id(job)})
        return JobState(job.id, job._version, job._phase, progress, pos, job.steps[pos].what if job.steps else None,
                        job._computed, tuple(job._errors), tuple(job._skipped), others)

    def _left(self, job: Job) -> float | None:
        """Seconds until ``job`` ends: the steps running now, then the queue served in turn on ``slots``
        workers, each step taking its expected time from the measured unit times (lock held; None before
        a step of some kind ahead was measured)."""
        now = time.monotonic()
        rates = self.clock.rates([(j.steps[j._pos].kind, j.steps[j._pos].work, now - j._step_t0)
                                  for j in self._running])

        def seconds(j: Job, i: int) -> float | None:
            return self.clock.expected(j.steps[i].kind, j.steps[i].work, rates)

        free: list[float] = []
        for j in self._running:
            exp = seconds(j, j._pos)
            if exp is None:
                return None
            free.append(max(exp - (now - j._step_t0), 0.0))
            if j is job and j._pos + 1 >= len(j.steps):
                return free[-1]
        free += [0.0] * max(self.slots - len(free), 0)
        order = deque((j, j._pos) for j in self._queue)
        order += [(j, j._pos + 1) for j in self._running if j._pos + 1 < len(j.steps)]
        while order:
            j, i = order.popleft()
            exp = seconds(j, i)
            if exp is None:
                return None
            free.sort()
            free[0] += exp
            if j is job and i + 1 >= len(j.steps):
                return free[0]
            if i + 1 < len(j.steps):
                order.append((j, i + 1))
        return 0.0


def _call(listeners: Sequence[Callable[[Job], None]], job: Job) -> None:
    for callback in listeners:
        try:
            callback(job)
        except Exception:  # noqa: BLE001 - a listener never stops the scheduler
            log.exception("a listener of job #%d failed", job.id)


_DEFAULT: list[Scheduler] = []
_DEFAULT_LOCK = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process's scheduler (one slot: one step at a time on the device), made on first use; the local
    sweep engine and the dashboard run on it, so their steps take turns."""
    with _DEFAULT_LOCK:
        if not _DEFAULT:
            _DEFAULT.append(Scheduler())
        return _DEFAULT[0]
