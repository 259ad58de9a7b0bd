"""Evaluations in background threads: the steps of :mod:`app.plan` run one by one on the shared
device, every finished step lands in a process-wide store and in the job's snapshot at once.

The time estimate comes from measured throughput: seconds per (task, eps) unit of attack work
and per probe fit, measured on this job's computed steps (:class:`Throughput`), never from
elapsed time divided by the fraction done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from rtcore import (
    BackboneUnavailableError,
    CheckpointError,
    Evaluation,
    ProgressEvent,
    TaskUnavailableError,
    run_evaluation,
)
from rtcore.config import eps_mask

from . import markers
from .backbones import BackboneRef
from .devices import DEVICE_LOCK, DEVICE_POLL_S
from .pieces import PIECES, PieceStore, cached_task, piece_key
from .plan import CACHED, PROBE, EvalRequest, Step
from .state import eps_short
from .throughput import PRIOR_COST, Throughput, fmt_seconds

log = logging.getLogger(__name__)

START_DELAY_S = 0.6  # a job that replaces an owner's earlier request waits this long: rapid changes coalesce
ATTACK_STAGES = {"feature attack", "end-to-end attack", "head-subspace attack", "loss attack"}
STAGE_TEXT = {"linear probe": "fitting the linear probe", "feature attack": "feature attack (Δ)",
              "end-to-end attack": "end-to-end attack", "head-subspace attack": "head-subspace attack (Δ_P)",
              "loss attack": "cross-entropy attack (loss)", "backbone": "preparing the backbone",
              "done": "storing results"}


__all__ = ["PIECES", "EvalRequest", "EvaluationJob", "PieceStore", "Snapshot", "Throughput", "fmt_seconds",
           "piece_key"]


# ---------------------------------------------------------------- snapshots

@dataclass
class Snapshot:
    """What a page draws: the results so far and the job's state."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    gallery: dict[tuple[str, str, float], dict[str, torch.Tensor]]
    class_names: dict[str, tuple[str, ...]]
    done: bool
    fraction: float
    status: str
    errors: list[str]
    warnings: list[str]
    version: int
    elapsed: float
    eta: float | None
    cancelled: bool = False
    job_id: int = 0

    @property
    def empty(self) -> bool:
        return self.summary.empty

    def at_eps(self, eps: float) -> pd.DataFrame:
        """Summary rows at one eps."""
        return self.summary[eps_mask(self.summary["eps"], eps)] if not self.empty else self.summary

    @property
    def preliminary(self) -> bool:
        """True while some rows still lack the head-subspace and loss attacks."""
        return not self.empty and "head_attack" in self.summary and not bool(self.summary["head_attack"].all())


class _Cancelled(Exception):
    """Raised from the progress callback to stop a superseded job."""


class _Miss(Exception):
    """A guarded (believed cached) step started computing: fall back to the staged plan."""


# ---------------------------------------------------------------- the job

class EvaluationJob:
    """One :class:`EvalRequest` computed step by step in a background thread.

    Steps already in :data:`PIECES` are taken from there at once; every other step holds
    :data:`DEVICE_LOCK` while it runs, so concurrent jobs take turns step by step. A finished
    step is stored (disk by rtcore, memory in :data:`PIECES`) and added to the snapshot.
    """

    _ids = 0
    _ids_lock = threading.Lock()

    def __init__(self, request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module],
                 start_delay: float = 0.0) -> None:
        missing = [b.display for b in request.backbones if b not in backbones]
        if missing:
            raise ValueError(f"no loaded backbone given for {missing}")
        with EvaluationJob._ids_lock:
            EvaluationJob._ids += 1
            self.id = EvaluationJob._ids
        self.request = request
        self._backbones = dict(backbones)
        self._start_delay = start_delay
        self._cond = threading.Condition()
        self._steps: list[Step] = request.steps()
        self._pieces: list[tuple[Step, Evaluation]] = []
        self._class_names: dict[str, tuple[str, ...]] = {}
        self._errors: list[str] = []
        self._warnings: list[str] = []
        self._skip: set[tuple[BackboneRef, str, str]] = set()
        self._fallback: dict[tuple[BackboneRef, str, str], list[Step]] = {}
        self._version = 0
        self._pos = 0  # index of the step being computed
        self._step_fraction = 0.0
        self._status = "waiting for the device"
        self._done = False
        self._computed_steps = 0
        self._throughput = Throughput()
        self._cancel = threading.Event()
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._cached: tuple[int, Snapshot] | None = None
        self._thread = threading.Thread(target=self._run, name=f"rtcore-dashboard-job-{self.id}", daemon=True)

    # -- control
    def start(self) -> EvaluationJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop at the next progress report; finished steps stay cached."""
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
        """How many steps this job computed (not taken from the store)."""
        with self._cond:
            return self._computed_steps

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Block until the snapshot version passes ``version`` or the job ends; True if it did."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version or self._done, timeout=timeout)
            return self._version != version or self._done

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- state
    def _weights(self) -> tuple[float, float]:
        """(work done, total work) in prior cost units, the current step counted by its fraction."""
        def w(s: Step) -> float:
            return PRIOR_COST.get(s.kind, 1.0) * s.units + 0.05

        total = sum(w(s) for s in self._steps) or 1.0
        done = sum(w(s) for s in self._steps[: self._pos]) + w(self._steps[self._pos]) * self._step_fraction \
            if self._pos < len(self._steps) else total
        return done, total

    def _fraction(self) -> float:
        if self._done:
            return 1.0
        done, total = self._weights()
        return min(1.0, done / total)

    def _eta(self) -> float | None:
        if self._done or self._pos >= len(self._steps):
            return None
        return self._throughput.eta(self._steps[self._pos + 1:], self._steps[self._pos], self._step_fraction)

    def progress(self) -> tuple[float, str]:
        """Overall fraction in [0, 1] and a status line with the stage and the measured time estimate."""
        with self._cond:
            f, status, eta = self._fraction(), self._status, self._eta()
            how = self._throughput.describe()
        elapsed = self._elapsed()
        tail = f" · {fmt_seconds(elapsed)} elapsed"
        if eta is not None:
            tail += f", about {fmt_seconds(eta)} left ({how})"
        elif not self.done:
            tail += ", time left: measuring the first steps"
        return f, status + tail

    def position(self) -> tuple[int, int, float, float | None]:
        """The step being computed (1-based), the number of steps, the fraction done, the time left."""
        with self._cond:
            return min(self._pos + 1, len(self._steps)), len(self._steps), self._fraction(), self._eta()

    def _elapsed(self) -> float:
        return (self._t_end or time.monotonic()) - self._t0

    def export_pieces(self) -> list[tuple[Step, Evaluation]]:
        """The final steps' results, in plan order (backbone, probe, task): what the downloads contain."""
        with self._cond:
            return [(s, ev) for s, ev in self._pieces if s.final]

    def snapshot(self) -> Snapshot:
        """The results so far (re-assembled only when a step has finished since the last call)."""
        with self._cond:
            version, done = self._version, self._done
            fraction, status, eta = self._fraction(), self._status, self._eta()
            cached = self._cached
            if cached is not None and cached[0] == version:
                snap = cached[1]
                snap.fraction, snap.status, snap.done, snap.eta = fraction, status, done, eta
                snap.elapsed = self._elapsed()
                return snap
            pieces = list(self._pieces)
            errors, warnings = list(self._errors), list(self._warnings)
            class_names = dict(self._class_names)
        from .merge import merge

        summary, samples, gallery = merge(pieces, self.request)
        snap = Snapshot(summary, samples, gallery, class_names, done, fraction, status, errors, warnings, version,
                        self._elapsed(), eta, self.cancelled, self.id)
        with self._cond:
            self._cached = (version, snap)
        return snap

    # -- worker
    def _update(self, step_fraction: float | None = None, status: str | None = None) -> None:
        with self._cond:
            if step_fraction is not None:
                self._step_fraction = min(1.0, max(self._step_fraction, step_fraction))
            if status is not None:
                self._status = status
            self._cond.notify_all()

    def _add(self, step: Step, ev: Evaluation, names: tuple[str, ...]) -> None:
        with self._cond:
            self._pieces.append((step, ev))
            self._class_names[step.task] = names
            self._version += 1
            self._cond.notify_all()

    def _prefill(self) -> None:
        """Take every step already in the store; guard the final step of trios marked complete on disk."""
        req = self.request
        for step in self._steps:
            hit = PIECES.get(piece_key(req, step))
            if hit is not None:
                self._add(step, *hit)
        have = {(s.ref, s.probe, s.task, s.eps, s.full) for s, _ in self._pieces}
        kept: list[Step] = []
        trio_steps: dict[tuple[BackboneRef, str, str], list[Step]] = defaultdict(list)
        for s in self._steps:
            trio_steps[(s.ref, s.probe, s.task)].append(s)
        for s in self._steps:
            trio = (s.ref, s.probe, s.task)
            todo = [t for t in trio_steps[trio] if (t.ref, t.probe, t.task, t.eps, t.full) not in have]
            if s.final and todo and markers.complete(req, s) and len(todo) > 1:
                self._fallback[trio] = [t for t in todo if t is not s]
        for s in self._steps:
            trio = (s.ref, s.probe, s.task)
            if (s.ref, s.probe, s.task, s.eps, s.full) in have:
                continue
            if trio in self._fallback and not s.final:
                continue  # believed cached on disk: only the final step runs (guarded)
            kept.append(s)
        with self._cond:
            self._steps = [s for s, _ in self._pieces] + kept
            self._pos = len(self._pieces)

    def _run(self) -> None:
        try:
            if self._start_delay > 0 and self._cancel.wait(self._start_delay):
                raise _Cancelled
            self._prefill()
            while True:
                with self._cond:
                    if self._pos >= len(self._steps):
                        break
                    step, i, n_steps = self._steps[self._pos], self._pos, len(self._steps)
                    self._step_fraction = 0.0
                if self._cancel.is_set():
                    raise _Cancelled
                if (step.ref, step.probe, step.task) not in self._skip:
                    self._run_step(step, i, n_steps)
                with self._cond:
                    self._pos += 1
            self._update(status="done")
        except _Cancelled:
            self._update(status="stopped (superseded by a newer selection); finished steps are cached")
        except Exception as e:
            log.exception("dashboard evaluation failed")
            with self._cond:
                self._errors.append(error_message(e))
        finally:
            with self._cond:
                self._done = True
                self._t_end = time.monotonic()
                self._version += 1
                self._cond.notify_all()

    def label(self, step: Step, i: int, n_steps: int) -> str:
        req = self.request
        where = f"{step.ref.display} · " if len(req.backbones) > 1 else ""
        probe = f"probe {step.probe} · " if len(req.probes) > 1 else ""
        eps_txt = ", ".join(eps_short(e, req.norm) for e in step.eps)
        extra = " · head-subspace and loss attacks" if step.full and step.kind != CACHED else ""
        return f"step {i + 1}/{n_steps} · {where}{probe}{step.task} · ε {eps_txt}{extra}"

    def _acquire_device(self, label: str) -> None:
        """Wait for this job's turn on the device; meanwhile the status names the job that holds it."""
        if DEVICE_LOCK.acquire(self, timeout=0):
            return
        try:
            while True:
                if self._cancel.is_set():
                    raise _Cancelled
                self._update(status=f"{label} · {self._waiting_text()}")
                if DEVICE_LOCK.acquire(self, timeout=DEVICE_POLL_S):
                    return
        except BaseException:
            DEVICE_LOCK.withdraw(self)
            raise

    def _waiting_text(self) -> str:
        holder = DEVICE_LOCK.holder
        if not isinstance(holder, EvaluationJob) or holder is self:
            return "waiting for the device"
        step, n_steps, fraction, eta = holder.position()
        left = f", about {fmt_seconds(eta)} left there" if eta is not None else ""
        return f"waiting for the device: another session's job is at step {step}/{n_steps} ({fraction:.0%}){left}"

    def _run_step(self, step: Step, i: int, n_steps: int) -> None:
        label = self.label(step, i, n_steps)
        self._acquire_device(label)
        try:
            self._compute(step, label)
        finally:
            DEVICE_LOCK.release(self)

    def _compute(self, step: Step, label: str) -> None:
        req = self.request
        self._update(status=f"{label} · loading the task")
        try:
            task = cached_task(step.task)
        except TaskUnavailableError as e:
            with self._cond:
                if not any(f"Task {step.task!r}" in w for w in self._warnings):
                    self._warnings.append(f"Task {step.task!r} skipped: {e}")
                self._skip.add((step.ref, step.probe, step.task))
            return
        trio = (step.ref, step.probe, step.task)
        guarded = step.final and trio in self._fallback
        computed = False

        def report(ev: ProgressEvent) -> None:
            nonlocal computed
            if self._cancel.is_set():
                raise _Cancelled
            if ev.stage in ATTACK_STAGES:
                computed = True
                if guarded:
                    raise _Miss
            self._update(min(max(ev.fraction, 0.0), 1.0), f"{label} · {STAGE_TEXT.get(ev.stage, ev.stage)}")

        g = self._backbones[step.ref]
        t0 = time.monotonic()
        try:
            ev = run_evaluation(g, [task], list(step.eps), req.norm, req.n, attack=req.attack, seed=req.seed,
                                probe=step.probe, head_attack=step.full, loss_attack=step.full,
                                cache_dir=req.cache_dir, device=getattr(g, "device", None), progress=report)
        except _Miss:
            log.info("cache entries of %s are missing; computing its stages", trio)
            with self._cond:
                fallback = self._fallback.pop(trio)
                self._steps[self._pos + 1:self._pos + 1] = [*fallback, step]
            return
        seconds = time.monotonic() - t0
        computed = computed or (step.kind == PROBE and seconds > 0.5)
        names = tuple(getattr(task, "classes", ()) or ())
        PIECES.put(piece_key(req, step), ev, names)
        if step.final:
            markers.mark(req, step)
        with self._cond:
            self._throughput.record(step, seconds, computed)
            self._computed_steps += 1
        self._add(step, ev, names)


def error_message(e: Exception) -> str:
    known: tuple[type[Exception], ...] = (ValueError, TaskUnavailableError, BackboneUnavailableError, CheckpointError)
    try:
        from rtcore.attacks import AttackUnavailableError  # type: ignore[attr-defined]

        known += (AttackUnavailableError,)
    except ImportError:
        pass
    if isinstance(e, known):
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}. The details are in the server log."
