"""Evaluations in background threads: the units of :func:`rtcore.runs.plan` run one by one on the shared
device (:data:`app.devices.DEVICE_LOCK`, first come first served, so the units of concurrent jobs
interleave), against process-wide :class:`rtcore.runs.Executor` objects; a page draws a
:class:`Snapshot` of what the executors hold.

A :class:`Request` is a page's selection as specs (one per backbone and probe) without the eps
cursor, so moving the cursor never starts a job. The time estimate is the library's measured
throughput (:class:`rtcore.runs.Throughput`), never elapsed time divided by the fraction done.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from rtcore import Backbone, BackboneUnavailableError, CheckpointError, TaskUnavailableError
from rtcore.config import eps_grid, eps_key, eps_mask
from rtcore.data import task_display_name
from rtcore.models.ref import BackboneRef
from rtcore.runs import EvalSpec, Executor, Throughput, Unit, fmt_seconds, plan

from .devices import DEVICE_LOCK, DEVICE_POLL_S
from .state import SEED, default_eps, eps_short

log = logging.getLogger(__name__)

#: what a unit does, in the progress line (before it reports a stage, it may be all cached)
UNIT_TEXT = {"fit": "probe fit and clean accuracy", "attack": "feature and end-to-end attacks",
             "head_loss": "head-subspace and loss attacks", "sanity": "sanity checks"}
#: the library's stage names in the progress line; a stage is only reported while it computes
STAGE_TEXT = {"linear probe": "fitting the linear probe", "feature attack": "feature attack (Δ)",
              "end-to-end attack": "end-to-end attack", "head-subspace attack": "head-subspace attack (Δ_P)",
              "loss attack": "cross-entropy attack (loss)", "sanity checks": "sanity checks",
              "fine-tuning": "fine-tuning", "reading cached results": "read from the cache", "done": "stored"}
KEYS = ["backbone", "probe", "task", "eps"]


@dataclass(frozen=True)
class Request:
    """What a page evaluates: ``specs`` (one per backbone and probe, same tasks, norm and eps), computed in
    the planner's order with ``first`` right after the probe fits and ``priority`` (added eps) next."""

    specs: tuple[EvalSpec, ...]
    first: tuple[float, ...] = ()
    priority: tuple[float, ...] = ()
    cache_dir: str = ""

    @property
    def norm(self) -> str:
        return self.specs[0].norm

    @property
    def eps(self) -> tuple[float, ...]:
        return self.specs[0].eps

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.specs[0].tasks

    def units(self) -> list[Unit]:
        return plan(self.specs, first=self.first, priority=self.priority)

    def same_but_eps(self, other: Request) -> bool:
        """Whether ``other`` asks the same of the same backbones, probes and tasks, only over other eps."""
        strip = [s.with_(eps=(0.0,)) for s in self.specs]
        return self.cache_dir == other.cache_dir and strip == [s.with_(eps=(0.0,)) for s in other.specs]


def make_request(refs: Sequence[BackboneRef], tasks: Sequence[str], norm: str, n: int, attack: str, *,
                 probes: Sequence[str] = ("logistic",), extras: Sequence[float] = (), cache_dir: str = "",
                 sanity: bool = False) -> Request:
    """A request over the library's grid of ``norm`` plus ``extras``; the spec checks every value once
    (ValueError naming it and the fix)."""
    if not refs:
        raise ValueError("choose at least one backbone")
    if not tasks:
        raise ValueError("choose at least one downstream task in the sidebar")
    grid = eps_grid(norm)
    added = tuple(sorted({eps_key(e) for e in extras} - set(grid)))
    specs = tuple(EvalSpec(ref, tuple(tasks), (*grid, *added), norm, n, attack, probe=p, seed=SEED, sanity=sanity)
                  for ref in dict.fromkeys(refs) for p in dict.fromkeys(probes))
    return Request(specs, (default_eps(norm),), added, cache_dir)


class Executors:
    """Process-wide executors by (spec, cache folder), least recently used out: every job and session
    asking for the same spec shares one executor (its results in memory, its backbone loaded once)."""

    def __init__(self, keep: int = 24) -> None:
        self._items: OrderedDict[tuple[EvalSpec, str], Executor] = OrderedDict()
        self._lock = threading.Lock()
        self.keep = keep

    def get(self, spec: EvalSpec, backbone: Backbone, cache_dir: str) -> Executor:
        with self._lock:
            ex = self._items.get((spec, cache_dir))
            if ex is None:
                ex = Executor(spec, backbone=backbone, cache_dir=cache_dir or None)
                self._items[(spec, cache_dir)] = ex
            self._items.move_to_end((spec, cache_dir))
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
            return ex


EXECUTORS = Executors()


@dataclass(frozen=True)
class Tables:
    """The results of a job's executors, in spec order: built once per version and shared by every
    session (never modified in place)."""

    key: tuple[object, ...]  #: what they hold: the job and its executors' versions (the shared figures' cache key)
    summary: pd.DataFrame
    samples: pd.DataFrame
    gallery: dict[tuple[str, str, float], dict[str, object]] = field(default_factory=dict)
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sanity: dict[str, list[object]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """What a page draws: the tables so far and the job's state."""

    tables: Tables
    tasks: tuple[str, ...]  #: the tasks asked for, by the names the tables give them
    done: bool
    fraction: float
    status: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    version: int
    elapsed: float
    eta: float | None
    cancelled: bool
    job_id: int

    @property
    def summary(self) -> pd.DataFrame:
        return self.tables.summary

    @property
    def samples(self) -> pd.DataFrame:
        return self.tables.samples

    @property
    def empty(self) -> bool:
        return self.summary.empty

    def at_eps(self, eps: float) -> pd.DataFrame:
        return self.summary[eps_mask(self.summary["eps"], eps)] if not self.empty else self.summary

    @property
    def preliminary(self) -> bool:
        """Some rows do not include the head-subspace and loss attacks yet."""
        return not self.empty and not bool(self.summary["head_attack"].all())


class _Cancelled(Exception):
    """Raised from the progress callback to stop a superseded job."""


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class BaseJob:
    """Steps run one by one in a daemon thread, each holding :data:`DEVICE_LOCK` (first come, first served:
    the steps of concurrent jobs interleave). Subclasses give :attr:`steps` (label, work) and
    :meth:`run_step`; this class keeps the state a page shows: progress, status, errors, a version that
    changes whenever a step finished, cancellation and the time estimate.

    ``start_delay``: seconds to wait before taking the device (a newer request in that time cancels this
    one before it computed anything)."""

    _ids = itertools.count(1)

    def __init__(self, steps: Sequence[tuple[str, float]], start_delay: float = 0.0) -> None:
        self.id = next(BaseJob._ids)
        self.steps = list(steps)
        self._start_delay = start_delay
        self._cond = threading.Condition()
        self._errors: list[str] = []
        self._warnings: list[str] = []
        self._pos, self._step_fraction, self._computed = 0, 0.0, 0
        self._status, self._version, self._done = "waiting for the device", 0, False
        self._cancel = threading.Event()
        self._t0, self._t_end = time.monotonic(), None  # type: tuple[float, float | None]
        self._thread = threading.Thread(target=self._run, name=f"rtcore-dashboard-job-{self.id}", daemon=True)

    # -- what subclasses give
    def run_step(self, i: int, report: Callable[[float, str], None]) -> bool:
        """Run step ``i`` (``report(fraction, stage)`` while it computes); return whether it computed anything."""
        raise NotImplementedError

    def eta(self) -> float | None:
        """Seconds left (None before a measurement); called with the lock held."""
        return None

    # -- control
    def start(self) -> BaseJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop at the next progress report; finished steps stay in the cache."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        with self._cond:
            return self._done

    @property
    def failed(self) -> bool:
        with self._cond:
            return self._done and bool(self._errors)

    @property
    def computed_steps(self) -> int:
        """How many steps computed something (the others were read from memory or disk)."""
        with self._cond:
            return self._computed

    @property
    def errors(self) -> tuple[str, ...]:
        with self._cond:
            return tuple(self._errors)

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Block until the version passes ``version`` or the job ends; True if it did."""
        with self._cond:
            return self._cond.wait_for(lambda: self._version != version or self._done, timeout=timeout)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- state
    def _fraction(self) -> float:
        if self._done:
            return 1.0
        weights = [max(w, 0.05) for _, w in self.steps]
        done = sum(weights[: self._pos]) + (weights[self._pos] * self._step_fraction if self._pos < len(weights) else 0)
        return min(1.0, done / (sum(weights) or 1.0))

    def position(self) -> tuple[int, int, float, float | None]:
        """The step being run (1-based), the number of steps, the fraction done, the seconds left."""
        with self._cond:
            eta = None if self._done else self.eta()
            return min(self._pos + 1, len(self.steps)), len(self.steps), self._fraction(), eta

    def progress(self) -> tuple[float, str]:
        """The fraction done and a status line: the step, its stage, the time spent and left."""
        with self._cond:
            fraction, status, done = self._fraction(), self._status, self._done
            eta = None if done else self.eta()
        tail = f" · {fmt_seconds(self.elapsed())} elapsed"
        if eta is not None:
            tail += f", about {fmt_seconds(eta)} left"
        elif not done:
            tail += ", time left: measured after the first computed step"
        return fraction, status + tail

    def elapsed(self) -> float:
        return (self._t_end or time.monotonic()) - self._t0

    @property
    def version(self) -> int:
        with self._cond:
            return self._version

    # -- the worker
    def _set(self, fraction: float | None = None, status: str | None = None) -> None:
        with self._cond:
            if fraction is not None:
                self._step_fraction = max(self._step_fraction, min(1.0, float(fraction)))
            if status is not None:
                self._status = status
            self._cond.notify_all()

    def warn(self, text: str) -> None:
        with self._cond:
            if text not in self._warnings:
                self._warnings.append(text)

    def skip(self, i: int) -> bool:
        """Whether step ``i`` is to be left out (e.g. its task turned out to be unavailable)."""
        return False

    def _run(self) -> None:
        try:
            if self._start_delay > 0 and self._cancel.wait(self._start_delay):
                raise _Cancelled
            for i, (label, _) in enumerate(self.steps):
                with self._cond:
                    self._pos, self._step_fraction = i, 0.0
                if self._cancel.is_set():
                    raise _Cancelled
                if not self.skip(i):
                    self._run_one(i, f"step {i + 1}/{len(self.steps)} · {label}")
            self._set(status="done")
        except _Cancelled:
            self._set(status="stopped (a newer selection replaced it); finished steps are cached")
        except Exception as e:  # noqa: BLE001 - the page shows the message, never a traceback
            log.exception("dashboard job failed")
            with self._cond:
                self._errors.append(error_message(e))
        finally:
            with self._cond:
                self._done, self._t_end = True, time.monotonic()
                self._version += 1
                self._cond.notify_all()

    def _run_one(self, i: int, label: str) -> None:
        self._acquire(label)
        try:
            self._set(status=f"{label} · checking the cache")

            def report(fraction: float, stage: str) -> None:
                if self._cancel.is_set():
                    raise _Cancelled
                self._set(fraction, f"{label} · {STAGE_TEXT.get(stage, stage)}")

            computed = self.run_step(i, report)
        finally:
            DEVICE_LOCK.release(self)
        with self._cond:
            self._computed += int(computed)
            self._version += 1
            self._cond.notify_all()

    def _acquire(self, label: str) -> None:
        """Wait for this job's turn on the device; meanwhile the status names the job that holds it."""
        if DEVICE_LOCK.acquire(self, timeout=0):
            return
        try:
            while not DEVICE_LOCK.acquire(self, timeout=DEVICE_POLL_S):
                if self._cancel.is_set():
                    raise _Cancelled
                self._set(status=f"{label} · {self._waiting_text()}")
        except BaseException:
            DEVICE_LOCK.withdraw(self)
            raise

    @staticmethod
    def _waiting_text() -> str:
        holder = DEVICE_LOCK.holder
        if not isinstance(holder, BaseJob):
            return "waiting for the device"
        step, n, fraction, eta = holder.position()
        left = f", about {fmt_seconds(eta)} left there" if eta is not None else ""
        return f"waiting for the device: another session's job is at step {step}/{n} ({fraction:.0%}){left}"


class Job(BaseJob):
    """One :class:`Request`: its planned units run against process-wide executors (see the module docstring).

    ``fallback``: an earlier job over other eps of the same selection, whose rows are shown for what this
    job has not reached yet (an added eps keeps the cached curves on screen)."""

    def __init__(self, request: Request, backbones: Mapping[BackboneRef, Backbone], start_delay: float = 0.0,
                 fallback: Job | None = None) -> None:
        missing = [s.backbone.display for s in request.specs if s.backbone not in backbones]
        if missing:
            raise ValueError(f"no loaded backbone given for {missing}")
        self.request = request
        self.executors = [EXECUTORS.get(s, backbones[s.backbone], request.cache_dir) for s in request.specs]
        self._by_spec = dict(zip(request.specs, self.executors))
        self.units = request.units()
        self.fallback = fallback
        self.throughput = Throughput()
        self._skipped: set[tuple[EvalSpec, str]] = set()
        self._tables: Tables | None = None
        super().__init__([(self.label(u), u.work) for u in self.units], start_delay)

    def label(self, unit: Unit) -> str:
        """``shapes · ε 4/255 · feature and end-to-end attacks`` (with the backbone and probe when several)."""
        specs = self.request.specs
        who = (f"{unit.spec.backbone.display} · " if len({s.backbone for s in specs}) > 1 else "") + \
            (f"probe {unit.spec.probe} · " if len({s.probe for s in specs}) > 1 else "")
        eps = [e for e in unit.eps if e > 0]
        where = f" · ε {', '.join(eps_short(e, unit.spec.norm) for e in eps)}" if eps and unit.stage != "sanity" else ""
        return f"{who}{unit.task}{where} · {UNIT_TEXT[unit.stage]}"

    def skip(self, i: int) -> bool:
        u = self.units[i]
        return (u.spec, u.task) in self._skipped

    def run_step(self, i: int, report: Callable[[float, str], None]) -> bool:
        unit = self.units[i]
        try:
            result = self._by_spec[unit.spec].run(unit, lambda ev: report(ev.fraction, ev.stage))
        except TaskUnavailableError as e:
            self._skipped.add((unit.spec, unit.task))
            self.warn(f"Task {unit.task!r} skipped: {e}")
            return False
        self.throughput.record(unit, result.seconds, result.computed)
        return result.computed

    def eta(self) -> float | None:
        if self._pos >= len(self.units):
            return None
        return self.throughput.eta(self.units[self._pos:], self._step_fraction)

    def tables(self) -> Tables:
        """The executors' results (memoised per executor version), with the fallback's rows where this job
        has none yet."""
        fb = self.fallback if self.fallback is not None and not self.done else None
        key = (self.id, *(ex.version for ex in self.executors), *(("fallback", *fb.tables().key) if fb else ()))
        memo = self._tables
        if memo is not None and memo.key == key:
            return memo
        evs = [ex.evaluation() for ex in self.executors]
        summary, samples = _concat([e.summary for e in evs]), _concat([e.samples for e in evs])
        gallery: dict[tuple[str, str, float], dict[str, object]] = {}
        names: dict[str, tuple[str, ...]] = {}
        sanity: dict[str, list[object]] = {}
        for spec, ev in zip(self.request.specs, evs):
            gallery.update({(spec.backbone.display, t, e): item for (t, e), item in ev.gallery.items()})
            names.update(ev.class_names)
            sanity.update(ev.sanity)
        if fb is not None:
            old = fb.tables()
            summary = _fill(summary, old.summary, KEYS)
            samples = _fill(samples, old.samples, [*KEYS, "sample"])
            gallery, names = {**old.gallery, **gallery}, {**old.class_names, **names}
        self._tables = Tables(key, summary, samples, gallery, names, sanity)
        return self._tables

    def snapshot(self) -> Snapshot:
        """The tables so far and the job's state (cheap: the tables are memoised)."""
        tables = self.tables()
        with self._cond:
            return Snapshot(tables, tuple(task_display_name(t) for t in self.request.tasks), self._done,
                            self._fraction(), self._status,
                            tuple(self._errors), tuple(self._warnings), self._version, self.elapsed(),
                            None if self._done else self.eta(), self.cancelled, self.id)

    def export(self) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[EvalSpec, tuple[str, ...]]]] | None:
        """Once finished: the summary and per-sample tables (exactly the executors' tables) and per spec the
        tasks they hold, as the spec names them (unavailable tasks are left out); None before."""
        if not self.done or self.cancelled:
            return None
        evs = [ex.evaluation() for ex in self.executors]
        parts = [(s, tuple(t for t in s.tasks if task_display_name(t) in set(ev.samples["task"])))
                 for s, ev in zip(self.request.specs, evs) if not ev.samples.empty]
        if not parts:
            return None
        return _concat([e.summary for e in evs]), _concat([e.samples for e in evs]), parts


def _fill(new: pd.DataFrame, old: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``new`` plus the rows of ``old`` whose ``keys`` it lacks (rows of an earlier job, shown until replaced)."""
    if old.empty:
        return new
    if new.empty:
        return old
    have = pd.MultiIndex.from_frame(new[keys])
    extra = old[~pd.MultiIndex.from_frame(old[keys]).isin(have)]
    return pd.concat([new, extra], ignore_index=True) if len(extra) else new


def error_message(e: Exception) -> str:
    """The message a page shows for a failed job: the library's own words for the errors it names."""
    if isinstance(e, (ValueError, TaskUnavailableError, BackboneUnavailableError, CheckpointError)):
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}. The details are in the server log."
