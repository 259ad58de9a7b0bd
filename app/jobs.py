"""Evaluations in background threads: requests, snapshots for the pages, a process-wide job registry."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rtcore import (
    PRESETS,
    BackboneUnavailableError,
    CheckpointError,
    Evaluation,
    ProgressEvent,
    TaskUnavailableError,
    load_task,
    run_evaluation,
)
from rtcore.config import NORMS, default_cache_dir

log = logging.getLogger(__name__)

from .backbones import BackboneRef
from .state import SEED, eps_to_evaluate, round_eps

# ---------------------------------------------------------------- evaluation requests and jobs

DEVICE_POLL_S = 0.25  # how often a job waiting for the device refreshes its status and checks for cancel


class DeviceLock:
    """The (shared) backbone device, held by one job for one step at a time.

    Waiting jobs are served first come, first served, so the steps of concurrent jobs
    interleave instead of one job running to its end while the others queue. The lock
    knows which job holds it, so a waiting job can say whose progress it waits for.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._holder: object | None = None

    @property
    def holder(self) -> object | None:
        """The job that holds the device now, or None."""
        with self._cond:
            return self._holder

    def acquire(self, job: object, timeout: float | None = None) -> bool:
        """Queue ``job`` (once) and wait up to ``timeout`` for its turn; True once it holds the device.

        A job that timed out keeps its place in the queue; :meth:`withdraw` gives it up.
        """
        with self._cond:
            if not any(j is job for j in self._queue):
                self._queue.append(job)
            turn = self._cond.wait_for(lambda: self._holder is None and self._queue[0] is job, timeout)
            if turn:
                self._queue.popleft()
                self._holder = job
            return turn

    def release(self, job: object) -> None:
        with self._cond:
            if self._holder is not job:
                raise RuntimeError("the device is not held by this job")
            self._holder = None
            self._cond.notify_all()

    def withdraw(self, job: object) -> None:
        """Leave the queue without taking the device (a cancelled job)."""
        with self._cond:
            self._queue = deque(j for j in self._queue if j is not job)
            self._cond.notify_all()


DEVICE_LOCK = DeviceLock()  # one evaluation step at a time on the (shared) backbone device


@dataclass(frozen=True)
class EvalRequest:
    """Everything that defines a dashboard evaluation (the grid plus the current eps)."""

    backbones: tuple[BackboneRef, ...]
    tasks: tuple[str, ...]
    eps: float
    norm: str
    n: int
    attack: str
    seed: int = SEED
    cache_dir: str = ""

    @property
    def eps_values(self) -> tuple[float, ...]:
        return eps_to_evaluate(self.norm, self.eps)

    def steps(self) -> list[tuple[BackboneRef, str, tuple[float, ...]]]:
        """Work in the order that draws something soonest: the current eps for every
        (backbone, task) first, then the rest of the grid."""
        first = [(b, t, (self.eps,)) for b in self.backbones for t in self.tasks]
        rest = tuple(e for e in self.eps_values if e != self.eps)
        return first + ([(b, t, rest) for b in self.backbones for t in self.tasks] if rest else [])


def make_request(backbones: Sequence[BackboneRef], tasks: Sequence[str], eps: float, norm: str, n: int,
                 attack: str, *, seed: int = SEED, cache_dir: str | os.PathLike[str] | None = None) -> EvalRequest:
    """A validated request; ``cache_dir`` defaults to ``$RTCORE_CACHE_DIR`` or ``~/.cache/rtcore``."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} must be one of {list(NORMS)}")
    if attack not in PRESETS:
        raise ValueError(f"attack={attack!r} must be one of {list(PRESETS)}")
    if not backbones:
        raise ValueError("choose at least one backbone")
    if not tasks:
        raise ValueError("choose at least one task in the sidebar")
    e = round_eps(eps)
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"eps={eps} must be in [0, 1] pixel units")
    if int(n) < 1:
        raise ValueError(f"n={n} must be a positive number of test points")
    cdir = str(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    return EvalRequest(tuple(dict.fromkeys(backbones)), tuple(dict.fromkeys(tasks)), e, norm, int(n), attack,
                       int(seed), cdir)


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

    @property
    def empty(self) -> bool:
        return self.summary.empty

    def at_eps(self, eps: float) -> pd.DataFrame:
        """Summary rows at one eps."""
        return self.summary[np.isclose(self.summary["eps"], eps)] if not self.empty else self.summary


class _Cancelled(Exception):
    """Raised from the progress callback to stop a superseded job."""


def _sort_key(request: EvalRequest) -> dict[str, dict[str, int]]:
    return {"backbone": {b.display: i for i, b in enumerate(request.backbones)},
            "task": {t: i for i, t in enumerate(request.tasks)}}


class EvaluationJob:
    """One :class:`EvalRequest` computed step by step in a background thread.

    Every finished (backbone, task, eps-list) step is stored on disk by rtcore and added to
    the snapshot at once; a page draws the snapshot and waits for the next version. The
    thread holds :data:`DEVICE_LOCK` for each step it computes, so jobs never share the device
    but the steps of concurrent jobs take turns.
    """

    def __init__(self, request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module]) -> None:
        missing = [b.display for b in request.backbones if b not in backbones]
        if missing:
            raise ValueError(f"no loaded backbone given for {missing}")
        self.request = request
        self._backbones = dict(backbones)
        self._cond = threading.Condition()
        self._pieces: list[tuple[BackboneRef, Evaluation]] = []
        self._class_names: dict[str, tuple[str, ...]] = {}
        self._errors: list[str] = []
        self._warnings: list[str] = []
        self._skip_tasks: set[str] = set()
        self._version = 0
        self._fraction = 0.0
        self._status = "waiting for the device"
        self._step = (0, len(request.steps()))
        self._done = False
        self._cancel = threading.Event()
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._cached: tuple[int, Snapshot] | None = None
        self._thread = threading.Thread(target=self._run, name="rtcore-dashboard-job", daemon=True)

    # -- control
    def start(self) -> EvaluationJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop at the next progress report; finished steps stay in the disk cache."""
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

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Block until the snapshot version passes ``version`` or the job ends; True if it did."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version or self._done, timeout=timeout)
            return self._version != version or self._done

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- state
    def progress(self) -> tuple[float, str]:
        """Overall fraction in [0, 1] and a status line with the stage and a time estimate."""
        with self._cond:
            f, status, done = self._fraction, self._status, self._done
        elapsed = self._elapsed()
        eta = _eta(f, elapsed, done)
        tail = f" · {elapsed:.0f} s elapsed" + (f", about {eta:.0f} s left" if eta is not None else "")
        return f, status + tail

    def position(self) -> tuple[int, int, float]:
        """The step being computed (1-based, 0 before the first), the number of steps, and the fraction done."""
        with self._cond:
            return self._step[0], self._step[1], self._fraction

    def _elapsed(self) -> float:
        return (self._t_end or time.monotonic()) - self._t0

    def snapshot(self) -> Snapshot:
        """The results so far (re-assembled only when a step has finished since the last call)."""
        with self._cond:
            version, done = self._version, self._done
            cached = self._cached
            if cached is not None and cached[0] == version:
                snap = cached[1]
                snap.fraction, snap.status, snap.done = self._fraction, self._status, done
                snap.elapsed = self._elapsed()
                snap.eta = _eta(snap.fraction, snap.elapsed, done)
                return snap
            pieces = list(self._pieces)
            errors, warnings = list(self._errors), list(self._warnings)
            fraction, status = self._fraction, self._status
            class_names = dict(self._class_names)
        summary, samples, gallery = _merge(pieces, self.request)
        elapsed = self._elapsed()
        snap = Snapshot(summary, samples, gallery, class_names, done, fraction, status, errors, warnings, version,
                        elapsed, _eta(fraction, elapsed, done), self.cancelled)
        with self._cond:
            self._cached = (version, snap)
        return snap

    # -- worker
    def _update(self, fraction: float | None = None, status: str | None = None) -> None:
        with self._cond:
            if fraction is not None:
                self._fraction = min(1.0, max(self._fraction, fraction))
            if status is not None:
                self._status = status
            self._cond.notify_all()

    def _run(self) -> None:
        req = self.request
        steps = req.steps()
        weights = _step_weights(steps)
        total = float(sum(weights)) or 1.0
        try:
            done_w = 0.0
            for i, ((ref, task, eps_list), w) in enumerate(zip(steps, weights, strict=False)):
                if self._cancel.is_set():
                    raise _Cancelled
                if task in self._skip_tasks:
                    done_w += w
                    continue
                self._acquire_device(self._label(i, len(steps), ref, task, eps_list))
                try:
                    with self._cond:
                        self._step = (i + 1, len(steps))
                    self._run_step(i, len(steps), ref, task, eps_list, done_w / total, w / total)
                finally:
                    DEVICE_LOCK.release(self)
                done_w += w
                self._update(done_w / total)
            self._update(1.0, "done")
        except _Cancelled:
            self._update(status="stopped (superseded by a newer selection); finished steps are cached")
        except Exception as e:  # noqa: BLE001 - reported to the page as a message, never a traceback
            log.exception("dashboard evaluation failed")
            with self._cond:
                self._errors.append(_error_message(e))
        finally:
            with self._cond:
                self._done = True
                self._t_end = time.monotonic()
                self._version += 1
                self._cond.notify_all()

    def _label(self, i: int, n_steps: int, ref: BackboneRef, task: str, eps_list: tuple[float, ...]) -> str:
        where = f"{ref.display} · " if len(self.request.backbones) > 1 else ""
        eps_txt = ", ".join(f"{e:g}" for e in eps_list)
        return f"step {i + 1}/{n_steps} · {where}{task} · ε {eps_txt}"

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
        step, n_steps, fraction = holder.position()
        return f"waiting for the device: another session's job is at step {step}/{n_steps} ({fraction:.0%})"

    def _run_step(self, i: int, n_steps: int, ref: BackboneRef, task: str, eps_list: tuple[float, ...],
                  base: float, width: float) -> None:
        req = self.request
        label = self._label(i, n_steps, ref, task, eps_list)
        self._update(status=f"{label} · loading the task")
        try:
            t = load_task(task)
        except TaskUnavailableError as e:
            with self._cond:
                self._warnings.append(f"Task {task!r} skipped: {e}")
                self._skip_tasks.add(task)
            return
        with self._cond:
            self._class_names[task] = t.classes

        def report(ev: ProgressEvent) -> None:
            if self._cancel.is_set():
                raise _Cancelled
            stage = {"linear probe": "fitting the linear probe", "feature attack": "feature attack (Δ)",
                     "end-to-end attack": "end-to-end attack", "backbone": "preparing the backbone",
                     "done": "storing results"}.get(ev.stage, ev.stage)
            self._update(base + width * min(max(ev.fraction, 0.0), 1.0), f"{label} · {stage}")

        g = self._backbones[ref]
        ev = run_evaluation(g, [t], list(eps_list), req.norm, req.n, attack=req.attack, seed=req.seed,
                            cache_dir=req.cache_dir, device=getattr(g, "device", None), progress=report)
        with self._cond:
            self._pieces.append((ref, ev))
            self._version += 1
            self._cond.notify_all()


def _step_weights(steps: Sequence[tuple[BackboneRef, str, tuple[float, ...]]]) -> list[float]:
    """Rough cost of each step: one unit per eps, plus two for the probe on a task's first step."""
    seen: set[tuple[BackboneRef, str]] = set()
    out = []
    for ref, task, eps_list in steps:
        first = (ref, task) not in seen
        seen.add((ref, task))
        out.append(len(eps_list) + (2.0 if first else 0.0))
    return out


def _eta(fraction: float, elapsed: float, done: bool) -> float | None:
    if done or fraction < 0.03 or elapsed < 2:
        return None
    return elapsed * (1 - fraction) / fraction


def _error_message(e: Exception) -> str:
    known = (ValueError, TaskUnavailableError, BackboneUnavailableError, CheckpointError)
    if isinstance(e, known):
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}. The details are in the server log."


def _merge(pieces: Sequence[tuple[BackboneRef, Evaluation]], request: EvalRequest
           ) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str, float], dict[str, torch.Tensor]]]:
    """Concatenate the finished steps; rows ordered by backbone, task (request order) and eps."""
    if not pieces:
        return _empty_summary(), _empty_samples(), {}
    summaries, samples, gallery = [], [], {}
    for ref, ev in pieces:
        s, p = ev.summary.copy(), ev.samples.copy()
        s["backbone"], p["backbone"] = ref.display, ref.display
        summaries.append(s)
        samples.append(p)
        for (task, e), item in ev.gallery.items():
            gallery[(ref.display, task, e)] = item
    order = _sort_key(request)
    summary = pd.concat(summaries, ignore_index=True)
    summary = summary.drop_duplicates(["backbone", "task", "norm", "eps"], keep="last")
    summary = summary.sort_values(
        ["backbone", "task", "eps"],
        key=lambda col: col.map(order[col.name]) if col.name in order else col,
    ).reset_index(drop=True)
    sample_df = pd.concat(samples, ignore_index=True)
    sample_df = sample_df.drop_duplicates(["backbone", "task", "norm", "eps", "sample"], keep="last")
    return summary, sample_df.reset_index(drop=True), gallery


SUMMARY_COLUMNS = ["backbone", "task", "norm", "eps", "n", "clean_acc", "robust_acc", "bound",
                   "bound_feature_only", "mean_delta", "median_delta", "mean_delta_feature",
                   "mean_relative_delta", "clean_loss", "adv_loss", "loss_bound", "bound_kind", "attack",
                   "seed", "seconds"]
SAMPLE_COLUMNS = ["backbone", "task", "norm", "eps", "sample", "label", "pred", "correct", "rho",
                  "delta_feature", "delta_e2e", "delta", "criterion_met", "criterion_met_feature_only", "robust",
                  "clean_loss", "adv_loss", "loss_bound", "feature_norm"]


def _empty_summary() -> pd.DataFrame:
    return pd.DataFrame(columns=SUMMARY_COLUMNS)


def _empty_samples() -> pd.DataFrame:
    return pd.DataFrame(columns=SAMPLE_COLUMNS)


class StreamlitSessions:
    """Which Streamlit session each dashboard session token belongs to: the owners' liveness check.

    Called with an owner key ``"{session_token}:{slot}"``, it is False only when the token's
    registered Streamlit session is known to have ended. An unregistered token, or no
    Streamlit runtime (AppTest, plain Python), counts as alive. Ended tokens are remembered
    (a bounded number) so that every slot of an ended session is recognised.
    """

    def __init__(self, remember_ended: int = 1024) -> None:
        self._ids: dict[str, str] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._remember_ended = remember_ended
        self._lock = threading.Lock()

    def register(self, token: str, session_id: str | None) -> None:
        """Remember that ``token`` belongs to the Streamlit session ``session_id`` (None: unknown)."""
        if not session_id:
            return
        with self._lock:
            self._ids[token] = session_id
            self._ended.pop(token, None)

    def __call__(self, owner: str) -> bool:
        token = owner.split(":", 1)[0]
        with self._lock:
            if token in self._ended:
                return False
            session_id = self._ids.get(token)
        if session_id is None or _session_active(session_id) is not False:
            return True
        with self._lock:
            if self._ids.get(token) == session_id:
                del self._ids[token]
                self._ended[token] = None
                while len(self._ended) > self._remember_ended:
                    self._ended.popitem(last=False)
        return False


def _session_active(session_id: str) -> bool | None:
    """Whether Streamlit's runtime has ``session_id`` as an active session; None when it cannot tell."""
    try:
        from streamlit import runtime

        if not runtime.exists():
            return None
        active = runtime.get_instance().is_active_session(session_id)
    except Exception:  # noqa: BLE001 - no runtime, or one that cannot answer: assume the session lives
        return None
    return active if isinstance(active, bool) else None


def _always_alive(owner: str) -> bool:
    return True


class JobRegistry:
    """Process-wide jobs by request: a second visit or another page attaches to the same job.

    ``owner`` (e.g. a session token and a page slot) lets a newer request of the same owner
    stop the owner's older, unfinished job, so a slider dragged through many values does not
    queue many evaluations; a job that another owner also follows is kept running. Owners
    for which ``is_alive`` is False (their session ended) and owners of jobs no longer in the
    registry are forgotten at each submit. Finished jobs are kept (least recently used first out).
    """

    def __init__(self, keep: int = 32, is_alive: Callable[[str], bool] | None = None) -> None:
        self._jobs: OrderedDict[EvalRequest, EvaluationJob] = OrderedDict()
        self._owners: dict[str, EvalRequest] = {}
        self._lock = threading.Lock()
        self._is_alive = is_alive or _always_alive
        self.keep = keep

    def owners(self) -> dict[str, EvalRequest]:
        """A copy of the owners and the request each follows."""
        with self._lock:
            return dict(self._owners)

    def prune_owners(self) -> int:
        """Forget owners whose session has ended or whose job is gone; return how many."""
        with self._lock:
            owners = dict(self._owners)
        ended = {o for o in owners if not self._alive(o)}  # outside the lock: the check may be slow
        with self._lock:
            gone = [o for o, r in self._owners.items()
                    if r not in self._jobs or (o in ended and owners.get(o) == r)]
            for o in gone:
                del self._owners[o]
        return len(gone)

    def _alive(self, owner: str) -> bool:
        try:
            return bool(self._is_alive(owner))
        except Exception:  # noqa: BLE001 - a failing check must not drop a live session's owner
            log.exception("owner liveness check failed for %r", owner)
            return True

    def submit(self, request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module],
               owner: str | None = None) -> EvaluationJob:
        """The job of ``request``: the running or finished one, or a new one started now."""
        self.prune_owners()
        with self._lock:
            job = self._jobs.get(request)
            if job is None or job.cancelled:
                job = EvaluationJob(request, backbones).start()
                self._jobs[request] = job
            self._jobs.move_to_end(request)
            if owner is not None:
                previous = self._owners.get(owner)
                self._owners[owner] = request
                if previous is not None and previous != request and not self._shared(previous, owner):
                    old = self._jobs.get(previous)
                    if old is not None and not old.done:
                        old.cancel()
            self._evict()
            return job

    def get(self, request: EvalRequest) -> EvaluationJob | None:
        with self._lock:
            return self._jobs.get(request)

    def discard(self, request: EvalRequest) -> None:
        """Forget a (failed) job so that the next submit starts it again."""
        with self._lock:
            job = self._jobs.pop(request, None)
            self._drop_orphan_owners()
        if job is not None:
            job.cancel()

    def _shared(self, request: EvalRequest, owner: str) -> bool:
        return any(r == request for o, r in self._owners.items() if o != owner)

    def _evict(self) -> None:
        finished = [r for r, j in self._jobs.items() if j.done]
        for r in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[r]
        self._drop_orphan_owners()

    def _drop_orphan_owners(self) -> None:
        """Forget owners of requests no longer in the registry (call with the lock held)."""
        for o in [o for o, r in self._owners.items() if r not in self._jobs]:
            del self._owners[o]


SESSIONS = StreamlitSessions()
JOBS = JobRegistry(is_alive=SESSIONS)


def register_session(token: str, session_id: str | None) -> None:
    """Tie a dashboard session token to its Streamlit session, so its owners are pruned once it ends."""
    SESSIONS.register(token, session_id)


def submit(request: EvalRequest, backbones: Mapping[BackboneRef, torch.nn.Module],
           owner: str | None = None) -> EvaluationJob:
    """Start or attach to the job of ``request`` in the process-wide registry."""
    return JOBS.submit(request, backbones, owner)


