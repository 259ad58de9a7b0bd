"""The jobs a dashboard runs on the :mod:`scheduler <rtcore.runs.scheduler>`: an evaluation of several specs
unit by unit (:class:`EvalJob`), and a comparison of transfer methods, method by method (:class:`TransferJob`).

An :class:`EvalRequest` is a selection as specs (one per backbone and probe, same tasks, norm and eps) and the
eps to compute first; its key is what it computes (the specs' digests, the order, the cache folder), so equal
requests share one job. The units run against process-wide :class:`~rtcore.runs.execute.Executor` objects
(:data:`EXECUTORS`: one per spec and cache folder, its backbone loaded once, its results in memory), so jobs
over other eps of the same selection share their work too. :meth:`EvalJob.snapshot` is what a page draws: the
tables so far (built once per version, shared by every caller) and the job's state, read in that order of
consistency: the tables are at least as new as the state says.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..cache import ResultCache
from ..config import eps_grid, eps_key
from ..data import TaskUnavailableError, create_task, task_display_name
from ..models import Backbone
from ..models.ref import BackboneRef
from ..sanity import SanityFlag
from ..tables import at_eps, concat_tables, fill_rows
from ..transfer import TRANSFER_METHODS, FineTuneRecipe, network_blocks
from .compare import MethodComparison, compare_methods
from .execute import Executor
from .plan import Unit, plan, unit_kind
from .progress import Kind, ProgressCallback
from .scheduler import Job, JobState, Step
from .spec import EvalSpec

#: the columns that name a row of the summary (an earlier job's rows fill the ones a new job lacks)
ROW_KEYS = ["backbone", "probe", "task", "eps"]


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate: ``specs`` (one per backbone and probe, same tasks, norm and eps), in the planner's order
    with ``first`` right after the probe fits and ``priority`` (eps added to the grid) next."""

    specs: tuple[EvalSpec, ...]
    first: tuple[float, ...] = ()
    priority: tuple[float, ...] = ()
    cache_dir: str = ""

    @classmethod
    def over_grid(cls, refs: Sequence[BackboneRef], tasks: Sequence[str], norm: str, n: int, attack: str, *,
                  probes: Sequence[str] = ("logistic",), extras: Sequence[float] = (), first: Sequence[float] = (),
                  seed: int = 0, cache_dir: str = "", sanity: bool = False) -> EvalRequest:
        """The library's eps grid of ``norm`` plus ``extras`` (computed with priority) for every backbone and
        probe; the spec checks every value once (ValueError naming it and the fix)."""
        if not refs:
            raise ValueError("choose at least one backbone")
        if not tasks:
            raise ValueError("choose at least one downstream task")
        grid = eps_grid(norm)
        added = tuple(sorted({eps_key(e) for e in extras} - set(grid)))
        specs = tuple(EvalSpec(backbone=ref, tasks=tuple(tasks), eps=(*grid, *added), norm=norm, n=n, attack=attack,
                               probe=p, seed=seed, sanity=sanity)
                      for ref in dict.fromkeys(refs) for p in dict.fromkeys(probes))
        return cls(specs, tuple(first), added, cache_dir)

    @property
    def norm(self) -> str:
        return self.specs[0].norm

    @property
    def eps(self) -> tuple[float, ...]:
        return self.specs[0].eps

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.specs[0].tasks

    @property
    def key(self) -> tuple[Hashable, ...]:
        """What the request computes: the specs' digests, the order and the cache folder."""
        return ("evaluate", tuple(s.digest() for s in self.specs), self.first, self.priority, self.cache_dir)

    def units(self) -> list[Unit]:
        return plan(self.specs, first=self.first, priority=self.priority)

    def workload(self) -> list[tuple[Kind, float]]:
        """(kind, work) of each unit, for the time estimate (:func:`unit_kind`)."""
        return [unit_kind(u) for u in self.units()]

    def same_but_eps(self, other: EvalRequest) -> bool:
        """Whether ``other`` asks the same of the same backbones, probes and tasks, only over other eps."""
        strip = [s.with_(eps=(0.0,)) for s in self.specs]
        return self.cache_dir == other.cache_dir and strip == [s.with_(eps=(0.0,)) for s in other.specs]


class Executors:
    """Executors by (spec, cache folder), least recently used out: every job asking for the same spec shares one
    executor (its results in memory, its backbone loaded once). ``make``: how one is made (the Executor)."""

    def __init__(self, keep: int = 24, make: Callable[..., Executor] = Executor) -> None:
        self._items: OrderedDict[tuple[EvalSpec, str], Executor] = OrderedDict()
        self._lock = threading.Lock()
        self.keep, self._make = keep, make

    def get(self, spec: EvalSpec, backbone: Backbone, cache_dir: str) -> Executor:
        with self._lock:
            ex = self._items.get((spec, cache_dir))
            if ex is None:
                ex = self._make(spec, backbone=backbone, cache_dir=cache_dir or None)
                self._items[(spec, cache_dir)] = ex
            self._items.move_to_end((spec, cache_dir))
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
            return ex


EXECUTORS = Executors()


@dataclass(frozen=True)
class Tables:
    """The results of a job's executors, in spec order: built once per version and shared (never modify them)."""

    key: tuple[object, ...]  #: what they hold: the job and its executors' versions (a cache key for figures)
    summary: pd.DataFrame
    samples: pd.DataFrame
    gallery: dict[tuple[str, str, float], dict[str, object]] = field(default_factory=dict)
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sanity: dict[str, list[object]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """An evaluation job at one moment: its tables so far and its state; ``tasks``: the tasks asked for, by
    the names the tables give them."""

    tables: Tables
    state: JobState
    tasks: tuple[str, ...]

    @property
    def summary(self) -> pd.DataFrame:
        return self.tables.summary

    @property
    def samples(self) -> pd.DataFrame:
        return self.tables.samples

    @property
    def empty(self) -> bool:
        return self.summary.empty

    @property
    def done(self) -> bool:
        return self.state.done

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def errors(self) -> tuple[BaseException, ...]:
        return self.state.errors

    def at_eps(self, eps: float) -> pd.DataFrame:
        return at_eps(self.summary, eps)

    @property
    def preliminary(self) -> bool:
        """Some rows do not include the head-subspace and loss attacks yet."""
        return not self.empty and not bool(self.summary["head_attack"].all())


class EvalJob(Job):
    """The planned units of an :class:`EvalRequest` against process-wide executors (see the module docstring);
    a task whose data is unavailable is skipped (:attr:`JobState.skipped`), the others go on.

    ``fallback``: an earlier job over other eps of the same selection, whose rows fill what this job has not
    reached yet (an added eps keeps the cached curves on screen)."""

    def __init__(self, request: EvalRequest, backbones: Mapping[BackboneRef, Backbone], *, delay: float = 0.0,
                 fallback: EvalJob | None = None, executors: Executors | None = None) -> None:
        missing = [s.backbone.display for s in request.specs if s.backbone not in backbones]
        if missing:
            raise ValueError(f"no loaded backbone given for {missing}")
        pool = executors or EXECUTORS
        self.request, self.fallback = request, fallback
        self.executors = [pool.get(s, backbones[s.backbone], request.cache_dir) for s in request.specs]
        by_spec = dict(zip(request.specs, self.executors))
        self.units = request.units()
        self._tables: Tables | None = None
        self._export: tuple[tuple[int, ...], Any] | None = None
        steps = [Step(*unit_kind(u), lambda report, u=u: by_spec[u.spec].run(u, report), what=u,
                      group=(u.spec, u.task)) for u in self.units]
        super().__init__(request.key, steps, delay=delay, tolerate=(TaskUnavailableError,))

    @classmethod
    def maker(cls, request: EvalRequest, backbones: Mapping[BackboneRef, Backbone],
              executors: Executors | None = None) -> Callable[[Job | None, float], EvalJob]:
        """How the scheduler makes this request's job (:meth:`rtcore.runs.scheduler.Scheduler.submit`): when it
        replaces a job over other eps of the same selection, that job is its ``fallback``."""

        def make(old: Job | None, delay: float) -> EvalJob:
            fallback = old if isinstance(old, EvalJob) and old.request.same_but_eps(request) else None
            return cls(request, backbones, delay=delay, fallback=fallback, executors=executors)

        return make

    def tables(self) -> Tables:
        """The executors' results (memoised per executor version), with the fallback's rows where this job has
        none yet."""
        fb = self.fallback if self.fallback is not None and not self.done else None
        key = (self.id, *(ex.version for ex in self.executors), *(("fallback", *fb.tables().key) if fb else ()))
        memo = self._tables
        if memo is not None and memo.key == key:
            return memo
        evs = [ex.evaluation() for ex in self.executors]
        summary, samples = concat_tables(e.summary for e in evs), concat_tables(e.samples for e in evs)
        gallery: dict[tuple[str, str, float], dict[str, object]] = {}
        names: dict[str, tuple[str, ...]] = {}
        sanity: dict[str, list[object]] = {}
        for spec, ev in zip(self.request.specs, evs):
            gallery.update({(spec.backbone.display, t, e): item for (t, e), item in ev.gallery.items()})
            names.update(ev.class_names)
            sanity.update(ev.sanity)
        if fb is not None:
            old = fb.tables()
            summary, samples = fill_rows(summary, old.summary, ROW_KEYS), fill_rows(samples, old.samples,
                                                                                    [*ROW_KEYS, "sample"])
            gallery, names = {**old.gallery, **gallery}, {**old.class_names, **names}
        self._tables = Tables(key, summary, samples, gallery, names, sanity)
        return self._tables

    def snapshot(self) -> Snapshot:
        """The state first, then the tables (so a snapshot that says done holds every result)."""
        state = self.state()
        return Snapshot(self.tables(), state, tuple(task_display_name(t) for t in self.request.tasks))

    def export(self) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[EvalSpec, tuple[str, ...]]]] | None:
        """Once finished: the summary and per-sample tables (exactly the executors' tables) and per spec the
        tasks they hold, as the spec names them (unavailable tasks are left out); None before. Built once."""
        if not self.done or self.cancelled:
            return None
        versions = tuple(ex.version for ex in self.executors)
        if self._export is not None and self._export[0] == versions:
            return self._export[1]
        evs = [ex.evaluation() for ex in self.executors]
        parts = [(s, tuple(t for t in s.tasks if task_display_name(t) in set(ev.summary["task"])))
                 for s, ev in zip(self.request.specs, evs) if not ev.summary.empty]
        out = (concat_tables(e.summary for e in evs), concat_tables(e.samples for e in evs), parts) if parts else None
        self._export = (versions, out)
        return out

    def sanity_flags(self) -> dict[str, list[SanityFlag]]:
        """The sanity flags per task (:mod:`rtcore.sanity`) once the job has finished without failing, else {}."""
        return dict(self.tables().sanity) if self.done and not self.state().failed else {}

    def finished_tasks(self) -> list[str]:
        """The tasks whose results are all there, as the specs name them (unavailable ones left out); empty until
        the job has finished."""
        export = self.export()
        return [t for _, tasks in export[2] for t in tasks] if export else []


@dataclass(frozen=True)
class TransferRequest:
    """What one comparison of transfer methods computes; equal requests share one job."""

    backbone: BackboneRef
    task: str
    methods: tuple[str, ...]
    k: int
    eps: tuple[float, ...]
    norm: str
    n: int
    attack: str
    epochs: int
    cache_dir: str

    @classmethod
    def over_grid(cls, g: Backbone, ref: BackboneRef, task: str, methods: Sequence[str], k: int, extra_eps: float,
                  norm: str, n: int, attack: str, epochs: int, cache_dir: str) -> TransferRequest:
        """The library's eps grid of ``norm`` plus ``extra_eps`` (ValueError naming a bad method, k or epochs)."""
        unknown = [m for m in methods if m not in TRANSFER_METHODS]
        if unknown or not methods:
            raise ValueError(f"methods {list(methods)} must be a non-empty selection of {list(TRANSFER_METHODS)}")
        n_blocks = len(network_blocks(g.net))
        if "ft-last-k" in methods and not 1 <= k <= n_blocks:
            raise ValueError(f"k={k} is out of range: backbone {g.name!r} has {n_blocks} blocks; choose 1..{n_blocks}")
        FineTuneRecipe(epochs=epochs)  # checks the number of epochs
        eps = tuple(sorted({*eps_grid(norm), eps_key(extra_eps)}))
        return cls(ref, task, tuple(m for m in TRANSFER_METHODS if m in methods),
                   int(k) if "ft-last-k" in methods else 1, eps, norm, int(n), attack, int(epochs), cache_dir)


@dataclass(frozen=True)
class MethodPart:
    """One method's rows of a comparison; ``computed``: False when all was read from the cache."""

    comparison: MethodComparison
    computed: bool


class TransferJob(Job):
    """The comparison of a :class:`TransferRequest`, one step per method (kind ``("transfer", backbone, method)``)."""

    def __init__(self, request: TransferRequest, g: Backbone, *, delay: float = 0.0) -> None:
        self.request, self._g = request, g
        steps = [Step(("transfer", request.backbone.display, m), 1.0, lambda report, m=m: self._method(m, report),
                      what=m)
                 for m in request.methods]
        super().__init__(request, steps, delay=delay)

    def _method(self, method: str, report: ProgressCallback) -> MethodPart:
        r = self.request
        cache = ResultCache(r.cache_dir or None)
        task = create_task(r.task, cache_dir=str(cache.root))
        part = compare_methods(self._g, task, r.eps, r.norm, r.n, methods=[method], k=r.k, attack=r.attack,
                               cache=cache, recipe=FineTuneRecipe(epochs=r.epochs), progress=report)
        return MethodPart(part, not all(info.from_cache for info in part.infos.values()))

    @property
    def result(self) -> MethodComparison | None:
        """Every method's rows once the job has finished, else None."""
        parts: list[Any] = self.results
        if not self.done or self.cancelled or any(p is None for p in parts):
            return None
        return MethodComparison(concat_tables(p.comparison.summary for p in parts),
                                concat_tables(p.comparison.samples for p in parts),
                                {k: v for p in parts for k, v in p.comparison.infos.items()},
                                [x for p in parts for x in p.comparison.recomputed])
