"""A job of the scheduler (:mod:`rtcore.runs.scheduler`): its steps, its state as a value, and the job itself
(version, waiting, listeners, cancelling, results). The worker threads that run its steps are the scheduler's.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .progress import Kind, ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from .scheduler import Scheduler


@dataclass(frozen=True)
class Step:
    """One unit of a job: ``run(report)`` computes it (``report`` takes its :class:`ProgressEvent` and raises
    :class:`Cancelled` once the job is stopped) and returns its result (one with a false ``computed``
    attribute was all read from the cache). ``kind`` and ``work`` are its class and size for the time
    estimate; ``what`` is what it computes (a Unit, a method), for whoever describes it; a tolerated error
    skips the later steps of its ``group``."""

    kind: Kind
    work: float
    run: Callable[[ProgressCallback], Any]
    what: Any = None
    group: Hashable = None


class Cancelled(Exception):
    """Raised inside a step's progress report once its job has been cancelled."""


@dataclass(frozen=True)
class JobState:
    """A job at one moment. ``phase``: ``waiting`` (queued while other jobs' steps run), ``running``, ``done``,
    ``failed`` or ``cancelled``; ``progress``: the running step's stage, the fraction of the job's work done,
    steps ``done`` of ``total``, ``seconds`` elapsed and ``left`` (None until a step of its kind was
    measured); ``step``/``what``: the step running or next; ``computed``: steps that computed something;
    ``skipped``: (group, error) of tolerated errors; ``others``: other jobs sharing the device now."""

    id: int
    version: int
    phase: str
    progress: ProgressEvent
    step: int
    what: Any
    computed: int = 0
    errors: tuple[BaseException, ...] = ()
    skipped: tuple[tuple[Hashable, BaseException], ...] = ()
    others: int = 0

    @property
    def done(self) -> bool:
        return self.phase in ("done", "failed", "cancelled")

    @property
    def cancelled(self) -> bool:
        return self.phase == "cancelled"

    @property
    def failed(self) -> bool:
        return self.phase == "failed"


class Job:
    """Steps run in order by a :class:`Scheduler` (see the module docstring); subclasses add what their
    results mean. Start it with :meth:`Scheduler.submit` (or :meth:`Scheduler.run`)."""

    _ids = itertools.count(1)

    def __init__(self, key: Hashable, steps: Sequence[Step], *, delay: float = 0.0,
                 tolerate: tuple[type[BaseException], ...] = ()) -> None:
        self.id = next(Job._ids)
        self.key, self.steps, self.tolerate = key, list(steps), tolerate
        self.results: list[Any] = [None] * len(self.steps)
        self._delay = float(delay)
        self._scheduler: Scheduler | None = None
        self._pos, self._fraction, self._stage, self._task = 0, 0.0, "", None  # type: int, float, str, str | None
        self._running, self._step_t0 = False, 0.0
        self._version, self._computed, self._phase = 0, 0, "waiting"
        self._errors: list[BaseException] = []
        self._skipped: list[tuple[Hashable, BaseException]] = []
        self._cancel = threading.Event()
        self._listeners: list[Callable[[Job], None]] = []
        self._t0 = self._t_end = 0.0
        self._not_before = 0.0

    # -- reading
    @property
    def _cond(self) -> threading.Condition:
        if self._scheduler is None:
            raise RuntimeError("this job was never submitted to a Scheduler")
        return self._scheduler._cond

    @property
    def version(self) -> int:
        """Changes whenever a step finished and when the job ended (a cheap read, to poll)."""
        return self._version

    @property
    def done(self) -> bool:
        return self._phase in ("done", "failed", "cancelled")

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def state(self) -> JobState:
        """The job now (its time left from the scheduler's measured unit times and queue)."""
        sched = self._scheduler
        if sched is None:
            raise RuntimeError("this job was never submitted to a Scheduler")
        with self._cond:
            return sched._state(self)

    def elapsed(self) -> float:
        return ((self._t_end or time.monotonic()) - self._t0) if self._t0 else 0.0

    def wait(self, version: int, timeout: float | None = None) -> bool:
        """Block until :attr:`version` differs from ``version`` (a step finished, or the job ended); True if so
        (at once False for a job that ended at ``version``: nothing will change)."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version or self.done, timeout=timeout)
            return self._version != version

    def join(self, timeout: float | None = None) -> bool:
        """Block until the job ends; True if it did."""
        with self._cond:
            return self._cond.wait_for(lambda: self.done, timeout=timeout)

    def listen(self, callback: Callable[[Job], None]) -> None:
        """Call ``callback(job)`` whenever the version changes (in the worker thread; keep it short). Called
        at once if the job has already ended."""
        with self._cond:
            if not self.done:
                self._listeners.append(callback)
                return
        callback(self)

    def cancel(self) -> None:
        """Stop at the running step's next progress report; finished steps keep their results (no effect on
        a job that has ended)."""
        if self.done:
            return
        self._cancel.set()
        if self._scheduler is not None:
            self._scheduler._cancelled(self)

    # -- the worker's side (with the scheduler's lock held, except _report and _run_step, which take it as needed)
    def _work_weights(self) -> list[float]:
        return [max(s.work, 0.05) for s in self.steps]

    def _job_fraction(self) -> float:
        if self._phase == "done":
            return 1.0
        w = self._work_weights()
        done = sum(w[: self._pos]) + (w[self._pos] * self._fraction if self._pos < len(w) else 0.0)
        return min(1.0, done / (sum(w) or 1.0))

    def _skip_done_groups(self) -> None:
        gone = {g for g, _ in self._skipped if g is not None}
        while self._pos < len(self.steps) and self.steps[self._pos].group in gone:
            self._pos += 1

    def _report(self, ev: ProgressEvent) -> None:
        if self._cancel.is_set():
            raise Cancelled
        with self._cond:
            self._fraction = max(self._fraction, min(max(float(ev.fraction), 0.0), 1.0))
            self._stage, self._task = ev.stage, ev.task

    def _run_step(self, step: Step) -> tuple[Any, BaseException | None]:
        try:
            return step.run(self._report), None
        except BaseException as e:  # noqa: BLE001 - every error becomes the job's value, never the worker's
            return None, e
