"""Where a sweep's units run: in this process (:class:`LocalEngine`) or as Ray tasks (:class:`RayEngine`).

:func:`run_unit` is the one piece of work both engines run: it evaluates one unit's
:class:`~rtcore.runs.spec.EvalSpec` against the verified result cache and returns a
:class:`SweepOutcome`, never raising: an error comes back as a value, classified as *expected* (bad
input or unavailable data: :class:`~rtcore.errors.RtcoreError`, ``ValueError``; reported without a
traceback), *retryable* (out of memory) or unexpected (reported with its traceback).

An engine takes units (``submit``) and hands back finished outcomes (``wait``); the driver in
:mod:`rtcore.runs.sweep` decides what to submit when. Ray is imported only by :class:`RayEngine`.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import RtcoreError
from .progress import ProgressCallback, ProgressEvent
from .scheduler import Job, Scheduler, Step, default_scheduler
from .spec import EvalSpec
from .sweep_spec import SweepUnit

#: the Ray version requirements.txt pins (the install hint names it)
RAY_REQUIREMENT = "ray[client]==2.60.0"
#: Ray retries a unit whose worker died (crash, node lost, killed for memory) this many times
RAY_MAX_RETRIES = 2
#: how often the local engine passes the running unit's latest progress on (seconds)
PROGRESS_POLL_S = 0.25
#: the environment variable of Ray workers' niceness (see :func:`_with_package_path`)
WORKER_NICENESS = "RAY_worker_niceness"
#: Ray's variables naming its auth token: the token itself, or its file (else Ray writes ``~/.ray/auth_token``)
RAY_TOKEN_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass
class SweepOutcome:
    """What running a unit gave: its tables, or its error (``expected``: no traceback is shown;
    ``retryable``: running it again can help, e.g. after running out of memory)."""

    unit_id: str
    ok: bool
    summary: pd.DataFrame | None = None
    samples: pd.DataFrame | None = None
    seconds: float = 0.0
    computed: bool = False
    recomputed: list[str] = field(default_factory=list)
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    expected: bool = False
    retryable: bool = False
    host: str = ""
    pid: int = 0
    threads: int = 0


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    try:
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def run_unit(unit_id: str, spec: EvalSpec, cache_dir: str | None, use_cache: bool = True,
             threads: int | None = None, progress: Callable[[ProgressEvent], None] | None = None) -> SweepOutcome:
    """Evaluate one unit (``spec`` has one backbone and one task); never raises (see the module docstring).

    ``threads``: torch's intra-op threads for this unit (a Ray worker gets its ``num_cpus``)."""
    import torch

    from .evaluate import execute

    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(int(threads))
    base = {"unit_id": unit_id, "host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    computed = [False]

    def report(ev: ProgressEvent) -> None:
        if ev.stage not in ("backbone", "done", "reading cached results"):
            computed[0] = True
        if progress is not None:
            progress(ev)

    try:
        ev = execute(spec, progress=report, cache_dir=cache_dir, use_cache=use_cache)
    except Exception as e:  # noqa: BLE001 - every error becomes a value the driver reports
        oom = _is_oom(e)
        if oom and torch.cuda.is_available():
            torch.cuda.empty_cache()
        expected = isinstance(e, (RtcoreError, ValueError)) and not oom
        return SweepOutcome(ok=False, seconds=time.perf_counter() - t0, error_type=type(e).__name__,
                           error=str(e) or repr(e), traceback="" if expected else traceback.format_exc(),
                           expected=expected, retryable=oom, **base)
    if ev.summary.empty:
        return SweepOutcome(ok=False, seconds=time.perf_counter() - t0, error_type="EmptyResult",
                           error="the evaluation produced no rows", **base)
    return SweepOutcome(ok=True, summary=ev.summary, samples=ev.samples, seconds=time.perf_counter() - t0,
                       computed=computed[0], recomputed=list(ev.recomputed), **base)


@dataclass
class Finished:
    """A unit's outcome as the driver receives it; ``latency``: seconds from submission to receipt."""

    unit: SweepUnit
    outcome: SweepOutcome
    latency: float


class LocalEngine:
    """Runs the units one after another in this process, on the process's scheduler
    (:func:`rtcore.runs.scheduler.default_scheduler`: one unit at a time on the device, taking turns with any
    other job of the process, and shared with a run of the same unit), with no Ray import (the default engine).

    ``progress``: receives the running unit's :class:`ProgressEvent` (its fraction done), in the caller's thread."""

    name = "local"

    def __init__(self, cache_dir: str | None, use_cache: bool = True,
                 progress: Callable[[SweepUnit, ProgressEvent], None] | None = None,
                 scheduler: Scheduler | None = None) -> None:
        self.cache_dir, self.use_cache, self._progress = cache_dir, use_cache, progress
        self._scheduler = scheduler or default_scheduler()
        self._queue: deque[tuple[SweepUnit, float]] = deque()

    def slots(self) -> int:
        return 1

    def describe(self) -> str:
        import torch

        return f"in this process, torch on {torch.get_num_threads()} threads"

    def submit(self, unit: SweepUnit) -> None:
        self._queue.append((unit, time.perf_counter()))

    def running(self) -> list[SweepUnit]:
        return [u for u, _ in self._queue]

    def wait(self, timeout: float) -> list[Finished]:
        """Run the next submitted unit to its end and return it (``timeout`` is not used: a unit in this
        process cannot be interrupted part-way except by Ctrl-C)."""
        if not self._queue:
            return []
        unit, t0 = self._queue.popleft()
        latest: list[ProgressEvent | None] = [None]

        def run(report: ProgressCallback) -> SweepOutcome:
            def relay(ev: ProgressEvent) -> None:
                latest[0] = ev
                report(ev)

            return run_unit(unit.id, unit.spec, self.cache_dir, self.use_cache, None, relay)

        key = ("sweep-unit", unit.id, unit.spec.digest(), self.cache_dir, self.use_cache)
        step = Step(("sweep", unit.backbone, "unit"), 1.0, run, what=unit)
        job = self._scheduler.submit(key, lambda old, delay: Job(key, [step]))
        shown = None
        try:
            while not job.join(PROGRESS_POLL_S):
                if self._progress is not None and latest[0] is not shown:
                    shown = latest[0]
                    self._progress(unit, shown)  # type: ignore[arg-type]
        finally:
            self._scheduler.discard(key)  # the driver stores the outcome; a retry runs the unit again
        out = job.results[0]
        if out is None:  # stopped before it ran (the job was cancelled)
            out = SweepOutcome(unit.id, ok=False, error_type="Cancelled", error="the unit was stopped before it ran")
        return [Finished(unit, out, time.perf_counter() - t0)]

    def close(self) -> None:
        self._queue.clear()


class RayEngine:
    """One Ray task per unit (``num_cpus=cpus_per_unit``, ``num_gpus=1`` when the cluster has GPUs, unless
    ``gpus_per_unit`` says otherwise), ``max_retries`` for lost workers; results come back to the driver.

    ``address=None`` starts a new local instance (``ray.init(address="local")``: never a cluster that
    happens to run here) with ``workers * cpus_per_unit`` CPUs (all cores when ``workers`` is None);
    ``"auto"`` or ``"ray://host:port"`` joins a cluster. An already initialised
    Ray (``ray.init`` called by the program) is used as it is and left running."""

    name = "ray"

    def __init__(self, cache_dir: str | None, use_cache: bool = True, *, address: str | None = None,
                 workers: int | None = None, cpus_per_unit: int = 1, gpus_per_unit: float | None = None,
                 max_retries: int = RAY_MAX_RETRIES, runtime_env: dict[str, Any] | None = None) -> None:
        ray = import_ray()
        self._ray = ray
        self.cache_dir, self.use_cache = cache_dir, use_cache
        self.cpus_per_unit, self.max_retries = cpus_per_unit, max_retries
        self.owned = False
        self.address = address
        self.init_seconds = 0.0
        self._set_env: list[str] = []
        if not ray.is_initialized():
            t0 = time.perf_counter()
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                                  "configure_logging": True}
            env = dict(runtime_env or {})
            if address is None:  # "local": a new instance, never a cluster that happens to run on this machine
                kw.update(address="local", num_cpus=(workers or os.cpu_count() or 1) * cpus_per_unit)
                env = _with_package_path(env)
                kw["_temp_dir"], self._set_env = _files_outside_home()
            else:
                kw["address"] = address
            if env:
                kw["runtime_env"] = env
            try:
                ray.init(**kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                self._restore_env()
                where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
                raise RtcoreError(f"could not start or join {where}: {e}") from e
            self.owned = True
            self.init_seconds = time.perf_counter() - t0
        res = ray.cluster_resources()
        self.gpus_per_unit = float(gpus_per_unit if gpus_per_unit is not None else (1 if res.get("GPU", 0) >= 1 else 0))
        self._remote = ray.remote(run_unit).options(num_cpus=cpus_per_unit, num_gpus=self.gpus_per_unit,
                                                    max_retries=max_retries, retry_exceptions=False)
        self._inflight: dict[Any, tuple[SweepUnit, float]] = {}
        self._gpus = float(res.get("GPU", 0))
        self._slots_at = 0.0
        self._slots = 1

    def slots(self) -> int:
        """Units that can run at once: the cluster's CPUs (or GPUs) over a unit's share (re-read every 10 s,
        so an autoscaling cluster's new nodes are used)."""
        now = time.monotonic()
        if now - self._slots_at > 10 and self._ray.is_initialized():
            res = self._ray.cluster_resources()
            by_cpu = int(res.get("CPU", 0) // self.cpus_per_unit)
            by_gpu = int(res.get("GPU", 0) // self.gpus_per_unit) if self.gpus_per_unit else by_cpu
            self._slots, self._slots_at = max(1, min(by_cpu, by_gpu)), now
        return self._slots

    def gpus_available(self) -> bool:
        """Whether the cluster has a GPU for a unit that asks for one."""
        return self._gpus >= max(self.gpus_per_unit, 1.0)

    def describe(self) -> str:
        res = self._ray.cluster_resources()
        gpus = f", {self.gpus_per_unit:g} GPU" if self.gpus_per_unit else ""
        where = (f"the Ray cluster at {self.address!r}" if self.address else
                 "a local Ray instance" if self.owned else "Ray (initialised by the caller)")
        return (f"{where}: {int(res.get('CPU', 0))} CPUs, {int(res.get('GPU', 0))} GPUs, "
                f"{len(self._ray.nodes())} node(s); each unit {self.cpus_per_unit} CPU{gpus}")

    def submit(self, unit: SweepUnit) -> None:
        ref = self._remote.remote(unit.id, unit.spec, self.cache_dir, self.use_cache, self.cpus_per_unit)
        self._inflight[ref] = (unit, time.perf_counter())

    def running(self) -> list[SweepUnit]:
        return [u for u, _ in self._inflight.values()]

    def wait(self, timeout: float) -> list[Finished]:
        """The units that finished within ``timeout`` seconds (a lost worker after Ray's retries is a failure)."""
        if not self._inflight:
            return []
        ready, _ = self._ray.wait(list(self._inflight), num_returns=1, timeout=timeout)
        if ready:  # collect every other finished one too
            ready, _ = self._ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=0)
        out = []
        for ref in ready:
            unit, t0 = self._inflight.pop(ref)
            try:
                outcome = self._ray.get(ref)
            except self._ray.exceptions.RayError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                lost = isinstance(e, (self._ray.exceptions.WorkerCrashedError, self._ray.exceptions.NodeDiedError))
                note = f" (a lost worker is retried {self.max_retries} time(s) by Ray)" if lost else ""
                outcome = SweepOutcome(unit.id, ok=False, error_type=type(e).__name__, error=f"{first}{note}",
                                      expected=lost, traceback="" if lost else str(e))
            out.append(Finished(unit, outcome, time.perf_counter() - t0))
        return out

    def close(self) -> None:
        for ref in list(self._inflight):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort: the units are recomputed by the next run
                pass
        self._inflight.clear()
        if self.owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._restore_env()

    def _restore_env(self) -> None:
        for var in self._set_env:
            os.environ.pop(var, None)
        self._set_env = []


def import_ray() -> Any:
    """The ``ray`` module, or an error naming the install command."""
    try:
        import ray
    except ImportError as e:
        raise RtcoreError(f"--engine ray needs Ray, which is not installed here ({e}); install it with "
                          f"`pip install '{RAY_REQUIREMENT}'` (it is in requirements.txt), or use --engine local"
                          ) from None
    return ray


def ray_available() -> bool:
    """Whether ``ray`` can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def ray_scratch_dir() -> Path:
    """This user's private folder for local Ray instances: ``<system temp>/rtcore-ray-<uid>`` (mode 0700;
    a fresh temporary folder when that name is someone else's or a link). It holds the auth token and
    ``ray/``, the instances' ``_temp_dir`` (session logs, sockets, spilled objects; Ray makes that one
    world-writable, so it lives inside this private one). Never under HOME unless the system's temp
    folder is (``TMPDIR``)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"rtcore-ray-{uid}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
            folder.chmod(0o700)
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="rtcore-ray-"))


def _own_private_file(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == (os.getuid() if hasattr(os, "getuid") else 0) \
        and not st.st_mode & 0o077


def _files_outside_home() -> tuple[str, list[str]]:
    """Keep a new local instance's files out of HOME: its temp folder (returned, for ``ray.init(_temp_dir=)``)
    and, unless the caller named a token (:data:`RAY_TOKEN_VARS`), the auth token Ray 2.60 otherwise
    creates as ``~/.ray/auth_token``: a private file in :func:`ray_scratch_dir`, named by
    ``RAY_AUTH_TOKEN_PATH`` while the instance runs (one token per user, as Ray's own). Returns the temp
    folder and the variables set."""
    folder = ray_scratch_dir()
    temp = str(folder / "ray")
    if any(os.environ.get(v) for v in RAY_TOKEN_VARS):
        return temp, []
    token = folder / "auth_token"
    if not _own_private_file(token):  # written whole, then renamed in: a driver starting beside reads all or none
        fd, tmp = tempfile.mkstemp(dir=folder)  # mode 0600
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(16))
        os.replace(tmp, token)
    os.environ[RAY_TOKEN_VARS[1]] = str(token)
    return temp, [RAY_TOKEN_VARS[1]]


def _with_package_path(env: dict[str, Any]) -> dict[str, Any]:
    """The runtime environment of a local instance's workers: they import rtcore from where this driver
    does (they start in its folder, which need not be the one holding the package), and they run at
    normal priority. Ray starts workers at niceness 15 (``RAY_worker_niceness``), made for dedicated
    nodes; on a shared workstation that leaves them only the cycles nobody else wants (measured: units
    2.3x slower than in the driver's process while other jobs ran), so a local instance sets 0, as
    Ray's own job supervisor does, unless the caller chose a value."""
    root = str(Path(__file__).resolve().parents[2])
    env_vars = dict(env.get("env_vars", {}))
    current = env_vars.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    if root not in current.split(os.pathsep):
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (root, current) if p)
    env_vars.setdefault(WORKER_NICENESS, os.environ.get(WORKER_NICENESS, "0"))
    return {**env, "env_vars": env_vars}
