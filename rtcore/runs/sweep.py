"""Sweeps across a backbone zoo: a :class:`~rtcore.runs.sweep_spec.SweepSpec` -> units -> an engine.

:func:`sweep` checks the whole sweep first (every unit's :class:`~rtcore.runs.spec.EvalSpec`, the
output and cache folders, the engine), reuses every unit whose stored result verifies
(:mod:`rtcore.runs.sweep_store`), runs the others on the chosen engine (:mod:`rtcore.runs.engines`:
``"local"`` in this process, ``"ray"`` one Ray task per unit), stores each unit's tables as soon as it
is done, and merges them into ``summary.csv`` and the per-sample table at the end (and the summary
every :data:`MERGE_EVERY_S` seconds on the way). A unit that fails does not stop the others: out of
memory is retried, then every failure is written to ``failures.csv``.

Scheduling: the units of one group (same backbone, inputs, norm, attack and seed on the frozen
backbone: they differ only in the probe) share the feature attack and the training features
through the result cache. The first unit of a group runs alone; the others start once it is done
and read those entries, so two workers never compute the same entry at once. Other groups fill the
remaining workers meanwhile.

Progress (:class:`SweepEvent`): units done / running / failed, the measured throughput and the time
left from the measured seconds per unit (per backbone once one of its units has finished).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import remove_stale_temporaries
from ..cache import check_cache_dir
from ..config import resolve_cache_dir
from .engines import Finished, LocalEngine, RayEngine, import_ray
from .progress import TimeLeft, fmt_seconds
from .resources import spec_device
from .sweep_spec import MAX_UNITS, SweepSpec, SweepUnit, as_sweep_spec, load_sweep_spec, slug
from .sweep_store import SAMPLE_FORMATS, SweepStore
from .zoo import list_sweeps, load_sweep, pretraining_protocol

__all__ = ["ENGINES", "SweepEvent", "SweepResult", "SweepSpec", "SweepUnit", "list_sweeps", "load_sweep",
           "load_sweep_spec", "pretraining_protocol", "sweep", "sweeps_dir"]

ENGINES = ("local", "ray")
#: how often the driver rewrites summary.csv while units land (seconds); also the heartbeat of progress
MERGE_EVERY_S = 30.0
#: how long the driver waits for a Ray unit before it sends a heartbeat event (seconds)
TICK_S = 5.0


@dataclass(frozen=True)
class SweepEvent:
    """A progress report of a sweep.

    ``kind``: ``start`` | ``unit-start`` | ``unit-progress`` (local engine: ``fraction`` of the running
    unit) | ``unit-done`` | ``unit-failed`` | ``retry`` | ``tick`` | ``done``. Counts are of units:
    ``done`` includes those reused from an earlier run (``reused``); ``eta_seconds`` is None until a
    unit has been measured; ``per_hour``: units computed per hour of wall time in this run."""

    kind: str
    done: int
    running: int
    failed: int
    total: int
    reused: int = 0
    eta_seconds: float | None = None
    per_hour: float | None = None
    unit: str = ""
    seconds: float | None = None
    fraction: float | None = None
    message: str = ""

    def line(self) -> str:
        """The counts, throughput and time left in one line (what the CLI prints)."""
        rate = f"{self.per_hour:.1f} units/h" if self.per_hour else "rate: measuring"
        left = f"about {fmt_seconds(self.eta_seconds)} left" if self.eta_seconds is not None else "time left: measuring"
        return (f"{self.done}/{self.total} done ({self.reused} reused), {self.running} running, "
                f"{self.failed} failed · {rate} · {left}")


SweepProgress = Callable[[SweepEvent], None]


@dataclass
class SweepResult:
    """What a sweep did. ``summary``: every finished unit's rows (``summary.csv``); ``failures``: the
    failed units (``failures.csv``); ``reused`` / ``ran`` / ``failed``: unit ids; ``rejected``: stored
    unit files that failed verification and were recomputed (id, reason); ``unit_seconds``: the
    measured seconds of each unit run here; ``latency``: seconds from submission to receipt (the
    difference is the engine's overhead); ``init_seconds``: time to start or join Ray."""

    out_dir: Path
    summary: pd.DataFrame
    failures: pd.DataFrame
    total: int
    reused: list[str]
    ran: list[str]
    failed: list[str]
    rejected: list[tuple[str, str]]
    recomputed_cache: list[str]
    wall_seconds: float
    engine: str
    engine_info: str
    samples_path: Path | None
    init_seconds: float = 0.0
    unit_seconds: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        """0: every unit done; 1: the sweep ran to its end but some units failed (see ``failures.csv``)."""
        return 0 if self.ok else 1


def _kind(unit: SweepUnit) -> tuple[str, str, str]:
    """A sweep unit's kind for the time estimate: units of one backbone cost alike (another's, until measured)."""
    return ("sweep", unit.backbone, "unit")


def sweeps_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache>/sweeps``: where sweeps go by default and where the dashboard looks for them."""
    return resolve_cache_dir(cache_dir).expanduser() / "sweeps"


def _check_engine(engine: str, address: str | None, workers: int | None, retries: int,
                  samples_format: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is unknown; use one of {list(ENGINES)}")
    if address is not None and engine != "ray":
        raise ValueError(f"address={address!r} needs engine='ray' (--engine ray)")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ValueError(f"address={address!r} is empty; give 'auto' or 'ray://host:10001', or leave it out "
                         f"for a local Ray instance")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers={workers!r} must be a whole number >= 1")
    if workers is not None and address is not None:
        raise ValueError(f"workers={workers} sets the CPUs of a local Ray instance; a cluster at {address!r} has "
                         f"its own: drop --workers")
    if workers is not None and engine == "local":
        raise ValueError("workers applies to engine='ray' (the local engine runs one unit at a time in this "
                         "process; set OMP_NUM_THREADS for its threads)")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries={retries!r} must be a whole number >= 0")
    if samples_format not in SAMPLE_FORMATS:
        raise ValueError(f"samples_format={samples_format!r} is unknown; use one of {list(SAMPLE_FORMATS)}")
    if samples_format == "parquet":
        from .._packages import package_installed

        if not package_installed("pyarrow"):
            raise ValueError("samples_format='parquet' needs pyarrow (pip install pyarrow); or use 'csv'")
    if engine == "ray":
        import_ray()


class _Driver:
    """The state of one sweep run on the driver: which units are stored, running, failed; the events."""

    def __init__(self, store: SweepStore, units: list[SweepUnit], retries: int, emit: SweepProgress) -> None:
        self.store, self.units, self.retries, self.emit = store, units, retries, emit
        self.summaries: dict[str, pd.DataFrame] = {}
        for u in units:
            if store.stored(u):
                self.summaries[u.id] = store.read_summary(u.id)
        self.reused = [u.id for u in units if u.id in self.summaries]
        self.todo = [u for u in units if u.id not in self.summaries]
        self.failures: dict[str, dict[str, Any]] = {}
        self.started: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.ran: list[str] = []
        self.unit_seconds: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self.recomputed_cache: list[str] = []
        self.clock = TimeLeft()  # seconds per unit, by backbone
        self.t0 = time.perf_counter()
        self.slots = 1

    def event(self, kind: str, **kw: Any) -> None:
        now = time.perf_counter()
        running = [(_kind(u), 1.0, now - self.started[u.id]) for u in self.todo if u.id in self.started
                   and u.id not in self.summaries and u.id not in self.failures]
        pending = [(_kind(u), 1.0) for u in self.todo if u.id not in self.started and u.id not in self.failures]
        wall = now - self.t0
        per_hour = 3600.0 * len(self.ran) / wall if self.ran and wall > 0 else None
        self.emit(SweepEvent(kind, len(self.summaries), len(running), len(self.failures), len(self.units),
                             len(self.reused), self.clock.left(pending, running, self.slots), per_hour, **kw))

    def done_ids(self) -> list[str]:
        return [u.id for u in self.units if u.id in self.summaries]

    def drive(self, eng: LocalEngine | RayEngine) -> None:
        """Submit units as workers free up (the first unit of a group alone), store each as it lands."""
        queue = list(self.todo)
        # a group is open once one of its units is stored (its cache entries exist); "leading" while its first runs
        state: dict[str, str] = {u.group: "open" for u in self.units if u.id in self.summaries}
        leader: dict[str, str] = {}
        inflight = 0
        last_merge = time.perf_counter()
        while queue or inflight:
            self.slots = eng.slots()
            while queue and inflight < self.slots:
                pick = next((u for u in queue if state.get(u.group, "closed") != "leading"), None)
                if pick is None:
                    break
                queue.remove(pick)
                if state.get(pick.group, "closed") == "closed":
                    state[pick.group], leader[pick.group] = "leading", pick.id
                self.attempts[pick.id] = self.attempts.get(pick.id, 0) + 1
                self.started[pick.id] = time.perf_counter()
                eng.submit(pick)
                inflight += 1
                self.event("unit-start", unit=pick.describe())
            finished: list[Finished] = eng.wait(TICK_S)
            if not finished:
                self.event("tick")
            for fin in finished:
                inflight -= 1
                again = self._land(fin)
                if again:
                    queue.insert(0, fin.unit)
                if leader.get(fin.unit.group) == fin.unit.id and state.get(fin.unit.group) == "leading":
                    # its entries are in the cache: the others may start; else the next one leads
                    state[fin.unit.group] = "open" if fin.unit.id in self.summaries else "closed"
            if time.perf_counter() - last_merge > MERGE_EVERY_S:
                self.store.merge_summary(self.done_ids())
                last_merge = time.perf_counter()

    def _land(self, fin: Finished) -> bool:
        """Store or record a finished unit; True when it is to be run again (out of memory, attempts left)."""
        unit, out = fin.unit, fin.outcome
        if out.ok and out.summary is not None and out.samples is not None:
            self.store.write(unit, out.summary, out.samples, out.seconds, out.computed,
                             {"host": out.host, "pid": out.pid, "threads": out.threads})
            self.summaries[unit.id] = self.store.read_summary(unit.id)
            self.ran.append(unit.id)
            self.unit_seconds[unit.id] = out.seconds
            self.latency[unit.id] = fin.latency
            self.recomputed_cache += out.recomputed
            self.clock.record(_kind(unit), 1.0, out.seconds)
            self.event("unit-done", unit=unit.describe(), seconds=out.seconds)
            return False
        attempt = self.attempts.get(unit.id, 1)
        if out.retryable and attempt <= self.retries:
            self.started.pop(unit.id, None)
            self.event("retry", unit=unit.describe(),
                       message=f"{out.error_type}: {out.error} (attempt {attempt} of {self.retries + 1})")
            return True
        self.failures[unit.id] = {**unit.labels(), "error_type": out.error_type, "error": out.error,
                                  "attempts": attempt, "traceback": out.traceback}
        self.event("unit-failed", unit=unit.describe(), seconds=out.seconds, message=f"{out.error_type}: {out.error}")
        return False


def sweep(spec: SweepSpec | Mapping[str, Any] | str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
          *, engine: str = "local", address: str | None = None, workers: int | None = None,
          cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True, retries: int = 2,
          samples_format: str = "csv", progress: SweepProgress | None = None,
          runtime_env: dict[str, Any] | None = None, max_units: int = MAX_UNITS) -> SweepResult:
    """Run a sweep (see the module docstring) and return what it did; the tables are in ``out_dir``.

    ``spec``: a :class:`SweepSpec`, a dict of its keys or the path of a ``.toml`` / ``.json`` sweep file;
    ``out_dir``: the output folder (default ``<cache>/sweeps/<file name or digest>``); ``engine``:
    ``"local"`` (this process, one unit at a time) or ``"ray"`` (``address``: None starts a local
    instance with ``workers`` CPUs, ``"auto"`` / ``"ray://host:port"`` joins a cluster; ``runtime_env``
    goes to ``ray.init``); ``retries``: extra attempts for a unit that ran out of memory (Ray retries
    lost workers itself); ``progress`` receives :class:`SweepEvent`; ``max_units``: the most units the
    sweep may expand to (a larger one is refused before anything is built). Everything is checked
    before any work: a bad value raises ``ValueError`` naming it."""
    t_start = time.perf_counter()
    sw = as_sweep_spec(spec, max_units)
    _check_engine(engine, address, workers, retries, samples_format)
    cache_root = str(check_cache_dir(resolve_cache_dir(cache_dir)).resolve()) if use_cache else None
    if out_dir is None:
        name = Path(spec).stem if isinstance(spec, (str, os.PathLike)) else f"sweep-{sw.digest()[:10]}"
        out_dir = sweeps_dir(cache_dir) / slug(name, 80)
    store = SweepStore(out_dir)
    remove_stale_temporaries(store.units_dir)
    store.write_sweep(sw)
    run = _Driver(store, list(sw.units), retries, progress or (lambda ev: None))

    eng: LocalEngine | RayEngine | None = None
    engine_info, init_seconds = "nothing to run", 0.0
    if run.todo:
        devices = {u.spec.device for u in run.todo}
        if engine == "ray":
            gpus = 1.0 if any(d.startswith("cuda") for d in devices) else 0.0 if devices == {"cpu"} else None
            eng = RayEngine(cache_root, use_cache, address=address, workers=workers, runtime_env=runtime_env,
                            gpus_per_unit=gpus)
            init_seconds = eng.init_seconds
            if gpus and not eng.gpus_available():
                eng.close()
                raise ValueError(f"the sweep asks for device {sorted(d for d in devices if d.startswith('cuda'))} but "
                                 f"the Ray cluster has no GPU; use device = \"auto\" or \"cpu\", or a cluster with GPUs")
        else:
            for d in devices:  # this process runs every unit: it must have each device, before any work
                spec_device(d)
            eng = LocalEngine(cache_root, use_cache, progress=lambda u, ev: run.event(
                "unit-progress", unit=u.describe(), fraction=ev.fraction, message=ev.stage))
        engine_info = eng.describe()
    run.event("start", message=f"{len(run.units)} units, {len(run.reused)} stored, {len(run.todo)} to run on "
                               f"{engine_info}; results in {store.root}")
    try:
        if eng is not None:
            run.drive(eng)
    finally:
        if eng is not None:
            eng.close()
        store.merge_summary(run.done_ids())
    done = run.done_ids()
    summary = pd.concat([run.summaries[i] for i in done], ignore_index=True) if done else pd.DataFrame()
    samples_path = store.merge_samples(done, samples_format) if done else None
    failed = [u.id for u in run.units if u.id in run.failures]
    fail_df = store.write_failures(run.failures[i] for i in failed)
    result = SweepResult(store.root, summary, fail_df, len(run.units), run.reused, run.ran, failed,
                         list(store.rejected), run.recomputed_cache, time.perf_counter() - t_start, engine,
                         engine_info, samples_path, init_seconds, run.unit_seconds, run.latency)
    run.event("done", message=f"{len(run.ran)} units computed, {len(run.reused)} reused, {len(failed)} failed "
                              f"in {fmt_seconds(result.wall_seconds)}")
    return result
