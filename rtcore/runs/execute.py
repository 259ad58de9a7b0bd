"""Run the units of a spec against the verified cache, and build the tidy tables from what is done.

:class:`Executor` holds one spec's state: the backbone (created once, or given), the tasks, per
task the seeded test subset, the clean features and the fitted head, and the attack results of
every (task, eps) done so far. :meth:`Executor.run` runs one :class:`~rtcore.runs.plan.Unit`
(cached steps of :mod:`rtcore.cached`: a second run computes nothing); :meth:`Executor.evaluation`
builds the tables of :mod:`rtcore.tables` from the finished units at any time (the dashboard draws
them while the rest runs); :func:`rtcore.runs.evaluate.execute` runs a whole plan and returns the final tables.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import pandas as pd
import torch

from ..attacks import AttackSetup
from ..bounds import head_projector
from ..cache import ResultCache
from ..config import DEFAULT_PROBE_EPS
from ..data import Task, create_task
from ..models import Backbone, resolve_device
from ..numerics import (chunk_rows, positional_batch, row_invariant, rows_per_chunk, set_positional_batch,
                        with_fixed_threads)
from ..probes import LinearProbe, probe_info
from ..sanity import SanityFlag, summary_text
from ..cached import (
    GALLERY,
    attack_cached,
    feature_attack_cached,
    features,
    fit_probe,
    loss_attack_cached,
    radius_from_training_points,
    task_sanity,
)
from ..tables import HeadInfo, summarise, task_rows
from .plan import Unit, test_indices
from .progress import ProgressCallback, ProgressEvent
from .results import Evaluation, TaskState, UnitReport
from .resources import auto_batch_size, halving_on_oom, spec_device
from .spec import EvalSpec

log = logging.getLogger(__name__)
#: the batch size of a backbone whose numbers depend on it (rows computed by position), when the spec says "auto"
FIXED_BATCH = 512
#: the stage names of progress events, per unit stage and step
STAGE_NAMES = {"fit": "linear probe", "adapt": "fine-tuning", "feature": "feature attack",
               "e2e": "end-to-end attack", "head": "head-subspace attack", "ce": "loss attack",
               "sanity": "sanity checks", "cached": "reading cached results"}


class _Computed:
    """A progress callback for a cached step: a step that reports progress is computing."""

    def __init__(self, report: Callable[[str, float], None], stage: str, lo: float, hi: float) -> None:
        self.report, self.stage, self.lo, self.hi = report, stage, lo, hi
        self.computed = False

    def __call__(self, f: float) -> None:
        self.computed = True
        self.report(self.stage, self.lo + (self.hi - self.lo) * f)


class Executor:
    """The units of one spec, run against the verified cache (see the module docstring).

    ``backbone``: an already created backbone (else the spec's reference is created on first use,
    on ``device``); ``tasks``: Task objects by name for tasks given in Python; ``head``: a fitted head
    used instead of fitting a probe (the ``probe`` column then reads ``given``); ``cache``: the result
    cache (else one at ``cache_dir``, disabled with ``use_cache=False``).
    """

    def __init__(self, spec: EvalSpec, *, backbone: Backbone | None = None, tasks: Mapping[str, Task] | None = None,
                 head: LinearProbe | None = None, cache: ResultCache | None = None, cache_dir: str | None = None,
                 use_cache: bool = True, device: str | torch.device | None = None) -> None:
        self.spec = spec
        self.cache = cache if cache is not None else ResultCache(cache_dir, enabled=use_cache)
        self._backbone = backbone
        self._device = resolve_device(device) if device is not None else spec_device(spec.device)
        self._given = dict(tasks or {})
        unknown = sorted(set(self._given) - set(spec.tasks))
        if unknown:
            raise ValueError(f"tasks {unknown} are given as objects but are not in the spec's tasks {list(spec.tasks)}")
        if head is not None:
            ignored = [f"{k}={v!r}" for k, v, default in (("transfer", spec.transfer, "lp"), ("probe_C", spec.probe_C, "auto"),
                                                          ("probe_eps", spec.probe_eps, None)) if v != default]
            if ignored:
                raise ValueError(f"a given head replaces the probe fit and the adaptation, so {', '.join(ignored)} "
                                 "would be ignored; leave them out, or leave out the head")
        self._head = head
        self._settings = spec.settings()
        self._batch: int | None = None if spec.batch_size == "auto" else int(spec.batch_size)
        self._state: dict[str, TaskState] = {}
        self._entries: dict[tuple[str, str, float], torch.Tensor] = {}
        self._gallery: dict[tuple[str, float], torch.Tensor] = {}
        self._flags: dict[str, list[SanityFlag]] = {}
        self._lock = threading.RLock()
        self._seconds = 0.0
        self._version = 0
        self._tables: tuple[int, Evaluation] | None = None

    # ---------------------------------------------------------------- resources
    def backbone(self) -> Backbone:
        """The spec's backbone, created on first use."""
        with self._lock:
            if self._backbone is None:
                self._backbone = self.spec.backbone.create(self._device, cache_dir=str(self.cache.root),
                                                           use_cache=self.cache.enabled)
            return self._backbone

    def task(self, name: str) -> Task:
        """The task ``name``: given, or loaded (memoised per process by :func:`rtcore.create_task`)."""
        if name in self._given:
            return self._given[name]
        return create_task(name, download=self.spec.download, cache_dir=str(self.cache.root),
                           use_cache=self.cache.enabled)

    @property
    def setup(self) -> AttackSetup:
        """The attacks' norm, settings (with the batch size in use) and seed."""
        return AttackSetup(self.spec.norm, self._settings, self.spec.seed)

    @property
    def version(self) -> int:
        """Changes whenever a unit adds results (the tables of :meth:`evaluation` are rebuilt only then)."""
        with self._lock:
            return self._version

    def state(self, name: str) -> TaskState | None:
        """The task's state once its ``fit`` unit has run, else None."""
        with self._lock:
            return self._state.get(name)

    # ---------------------------------------------------------------- units
    @with_fixed_threads
    def run(self, unit: Unit, progress: ProgressCallback | None = None) -> UnitReport:
        """Run one unit (its prerequisites first: a task's ``fit`` before its attacks); cached work is read."""
        if unit.spec != self.spec:
            raise ValueError("this unit belongs to another spec; run it with that spec's executor")
        emit = progress or (lambda ev: None)
        flags: list[_Computed] = []
        high = [0.0]

        def report(stage: str, f: float) -> None:  # never backwards, whatever order the steps report in
            high[0] = max(high[0], min(max(f, 0.0), 1.0))
            emit(ProgressEvent(stage, high[0], unit.task))

        def step(name: str, lo: float, hi: float) -> _Computed:
            c = _Computed(report, STAGE_NAMES[name], lo, hi)
            flags.append(c)
            return c

        if unit.stage not in STAGE_WORK:
            raise ValueError(f"unit stage {unit.stage!r} is unknown")
        t0 = time.perf_counter()
        batch = self.batch_size(unit.task)
        # out of memory halves the batch down to one chunk (a smaller batch only where the spec asks for one:
        # below the chunk the arithmetic changes, and results already held were computed with this one)
        halving_on_oom(lambda b: self._work(unit, step, b), batch, min(batch, chunk_rows(self.backbone().device)))
        seconds = time.perf_counter() - t0
        computed = any(c.computed for c in flags)
        with self._lock:
            self._seconds += seconds
            self._version += 1
        report(STAGE_NAMES["cached"] if not computed else "done", 1.0)
        return UnitReport(unit, seconds, computed)

    def _work(self, unit: Unit, step: Callable[[str, float, float], _Computed], batch: int) -> None:
        """``unit``'s stage with ``batch`` images at once; a batch below the device's chunk computes in chunks of
        that size (:func:`rtcore.numerics.rows_per_chunk`: memory bounded by the batch, results keyed by the chunk)."""
        small = batch < chunk_rows(self.backbone().device)
        with rows_per_chunk(batch if small else None):
            STAGE_WORK[unit.stage](self, unit, step, batch)

    def steps(self, unit: Unit) -> float:
        """The image-steps ``unit`` computes when nothing is cached (:func:`rtcore.runs.estimate.unit_steps`)."""
        from .estimate import unit_steps

        t = self.task(unit.task)
        return unit_steps(unit, self.spec.n_for(int(t.x_test.shape[0])), int(t.x_train.shape[0]), self._settings)

    def batch_size(self, task: str) -> int:
        """The spec's batch size, or (``"auto"``) one that fits the device's free memory, found once. For a
        backbone whose rows depend on their position in a chunk (:func:`rtcore.numerics.row_invariant`),
        ``"auto"`` is :data:`FIXED_BATCH` and the batch size enters the cache keys (its numbers depend on it)."""
        with self._lock:
            if self._batch is None:
                g, x = self.backbone(), self.task(task).x_test[:1]
                asked = self.spec.batch_size
                small = asked if isinstance(asked, int) and asked < chunk_rows(g.device) else None
                with rows_per_chunk(small):  # the check's chunk is the run's (a small batch bounds its memory)
                    invariant = row_invariant(g, x[0].to(g.device))
                if invariant:
                    self._batch = auto_batch_size(g, tuple(x.shape[1:])) if self.spec.batch_size == "auto" \
                        else int(self.spec.batch_size)
                else:
                    self._batch = FIXED_BATCH if self.spec.batch_size == "auto" else int(self.spec.batch_size)
                    set_positional_batch(g, self._batch)
                    log.warning("backbone %r computes an image's features differently at different positions of "
                                "a batch; its numbers depend on the batch size (%d), which enters its cache keys",
                                g.name, self._batch)
            return self._batch

    def _with_batch(self, batch: int) -> None:
        with self._lock:
            self._batch = batch
            self._settings = replace(self._settings, batch_size=batch)
            g = self.backbone()
            if positional_batch(g) is not None:
                set_positional_batch(g, batch)

    def _fit(self, name: str, step: Callable[[str, float, float], _Computed]) -> TaskState:
        with self._lock:
            hit = self._state.get(name)
        if hit is not None:
            return hit
        spec, cfg = self.spec, self._settings
        g = self.backbone()
        task = self.task(name)
        gt = g
        if self._head is not None:
            head = _given_head(self._head, task.num_classes)
            info = HeadInfo("given", float(getattr(self._head, "C_", "nan")), 0.0)
        elif spec.transfer != "lp":
            from ..transfer.adaptation import adapt

            adapted = adapt(g, task, spec.transfer, k=spec.transfer_k or 1, probe=spec.probe, seed=spec.seed,
                            cache=self.cache, progress=step("adapt", 0.0, 0.9), recipe=spec.finetune,
                            probe_params={} if spec.probe_C == "auto" else {"C": spec.probe_C})
            gt, head = adapted.backbone, adapted.head
            info = HeadInfo("fine-tuned", float("nan"), 0.0, adapted.info.label)
        else:
            kind = probe_info(spec.probe)
            params: dict[str, object] = {"C": spec.probe_C} if kind.takes_C else {}
            radius = 0.0
            if kind.takes_radius:
                p_eps = DEFAULT_PROBE_EPS[spec.norm] if spec.probe_eps is None else spec.probe_eps
                radius = radius_from_training_points(g, task, p_eps, self.setup, self.cache, step("feature", 0.0, 0.5))
                params["radius"] = radius
            head = fit_probe(g, task, self.cache, spec.probe, progress=step("fit", 0.5, 0.9), **params)
            info = HeadInfo(spec.probe, float(getattr(head, "C_", float("nan"))), radius)
        idx = test_indices(task.x_test.shape[0], spec.n_for(task.x_test.shape[0]), spec.seed)
        x, y = task.x_test[idx], task.y_test[idx]
        f0 = features(gt, x, self.cache, batch_size=cfg.batch_size, progress=step("fit", 0.9, 1.0))
        state = TaskState(task, idx, x, y, gt, head, info, f0)
        with self._lock:
            return self._state.setdefault(name, state)

    def _attack(self, name: str, eps: Sequence[float], step: Callable[[str, float, float], _Computed]) -> None:
        st = self._fit(name, step)
        todo = [e for e in eps if (name, "e2e", e) not in self._entries]
        if not todo:
            return
        setup = self.setup
        feat = feature_attack_cached(st.g, st.x, st.m, todo, setup, self.cache, step("feature", 0.0, 0.55))
        e2e = attack_cached(st.g, st.head, st.x, st.y, st.m, todo, setup, self.cache, step("e2e", 0.55, 1.0))
        with self._lock:
            for e in todo:
                self._entries[(name, "feature", e)] = feat[e]["features_adv"]
                self._gallery[(name, e)] = feat[e]["x_adv_gallery"]
                self._entries[(name, "e2e", e)] = e2e[e]["features_adv"]

    def _head_loss(self, name: str, eps: Sequence[float], step: Callable[[str, float, float], _Computed]) -> None:
        st = self._fit(name, step)
        spec, setup = self.spec, self.setup
        if spec.head_attack:
            todo = [e for e in eps if (name, "head", e) not in self._entries]
            if todo:
                on_head = feature_attack_cached(st.g, st.x, st.m, todo, setup, self.cache,
                                                step("head", 0.0, 0.5), projector=head_projector(st.head.weight_),
                                                kind="head_attack")
                with self._lock:
                    self._entries.update({(name, "head", e): on_head[e]["features_adv"] for e in todo})
        if spec.loss_attack:
            todo = [e for e in eps if (name, "ce", e) not in self._entries]
            if todo:
                ce = loss_attack_cached(st.g, st.head, st.x, st.y, st.m, todo, setup, self.cache,
                                        step("ce", 0.5, 1.0))
                with self._lock:
                    self._entries.update({(name, "ce", e): ce[e]["features_adv"] for e in todo})

    def _sanity(self, name: str, step: Callable[[str, float, float], _Computed]) -> None:
        st = self._fit(name, step)
        self._attack(name, self.spec.eps, step)
        self._head_loss(name, self.spec.eps, step)
        rows = self._rows(name)
        spec = self.spec
        fl = task_sanity(st.g, st.head, st.x, st.y, spec.eps, self.setup, rows, spec.sanity_subset,
                         step("sanity", 0.0, 1.0))
        with self._lock:
            self._flags[name] = fl

    # ---------------------------------------------------------------- tables
    def _witnesses(self, name: str) -> dict[float, dict[str, torch.Tensor]]:
        """Per eps with a finished ``attack`` unit: the witnesses' features of every attack run there."""
        out: dict[float, dict[str, torch.Tensor]] = {}
        for e in self.spec.eps:
            if (name, "e2e", e) not in self._entries:
                continue
            out[e] = {k: self._entries[(name, k, e)] for k in ("feature", "e2e", "head", "ce")
                      if (name, k, e) in self._entries}
        return out

    def _rows(self, name: str) -> pd.DataFrame | None:
        with self._lock:
            st = self._state.get(name)
            if st is None:
                return None
            wit = self._witnesses(name)
        if not wit:
            return None
        rows = task_rows(self.backbone().name, st.task, st.idx, self.spec.norm, st.f0, st.head, st.info, wit)
        flags = {e: ("head" in w, "ce" in w) for e, w in wit.items()}
        rows["_head"] = rows["eps"].map(lambda e: flags[e][0] and self.spec.head_attack)
        rows["_loss"] = rows["eps"].map(lambda e: flags[e][1] and self.spec.loss_attack)
        return rows

    @with_fixed_threads
    def evaluation(self) -> Evaluation:
        """The tables of every finished (task, eps), tasks in the spec's order: complete once every unit ran.

        ``head_attack`` / ``loss_attack`` say per row whether those attacks are in its numbers (until
        they ran, ``bound_head`` and ``adv_loss`` use the other attacks' witnesses: sound, looser).
        The tables are built once per :attr:`version` and shared: do not modify them in place."""
        with self._lock:
            version, memo = self._version, self._tables
        if memo is not None and memo[0] == version:
            return memo[1]
        ev = self._build()
        with self._lock:
            self._tables = (version, ev)
        return ev

    def _build(self) -> Evaluation:
        frames = [r for t in self.spec.tasks if (r := self._rows(t)) is not None]
        if not frames:
            return Evaluation(pd.DataFrame(), pd.DataFrame(), recomputed=self.recomputed())
        samples = pd.concat(frames, ignore_index=True)
        full = samples.groupby(["task", "eps"], sort=False)[["_head", "_loss"]].all()
        samples = samples.drop(columns=["_head", "_loss"])
        summary = summarise(samples)
        keys = list(zip(summary["task"], summary["eps"]))
        summary["attack"] = self.spec.strength
        summary["head_attack"] = [bool(full.loc[k, "_head"]) for k in keys]
        summary["loss_attack"] = [bool(full.loc[k, "_loss"]) for k in keys]
        summary["seed"] = self.spec.seed
        with self._lock:
            flags = {t: list(f) for t, f in self._flags.items()}
            gallery = dict(self._gallery)
            states = dict(self._state)
            seconds = self._seconds
        if self.spec.sanity:
            summary["sanity_flags"] = summary["task"].map({t: summary_text(f) for t, f in flags.items()})
        summary["seconds"] = seconds
        gal = {}
        for (t, e), x_adv in gallery.items():
            st = states[t]
            gal[(t, e)] = {"x": st.x[:GALLERY], "x_adv": x_adv, "label": st.y[:GALLERY]}
        names = {t: tuple(getattr(s.task, "classes", ()) or ()) for t, s in states.items()}
        return Evaluation(summary, samples, gal, self.recomputed(), flags, names)

    def recomputed(self) -> list[str]:
        """Cache entries that failed verification and were recomputed (path: reason)."""
        return [f"{r.path}: {r.reason}" for r in self.cache.rejected]


def _stage(fn: Callable[..., None], with_eps: bool = True) -> Callable[[Executor, Unit, Callable[..., _Computed], int], None]:
    def work(ex: Executor, unit: Unit, step: Callable[..., _Computed], batch: int) -> None:
        ex._with_batch(batch)
        fn(ex, unit.task, unit.eps, step) if with_eps else fn(ex, unit.task, step)
    return work


def _fit_unit(ex: Executor, name: str, eps: Sequence[float], step: Callable[..., _Computed]) -> None:
    ex._fit(name, step)
    ex._attack(name, eps, step)


#: what each unit stage runs (with the batch size it may use)
STAGE_WORK: dict[str, Callable[[Executor, Unit, Callable[..., _Computed], int], None]] = {
    "fit": _stage(_fit_unit), "attack": _stage(Executor._attack), "head_loss": _stage(Executor._head_loss),
    "sanity": _stage(Executor._sanity, with_eps=False),
}


def _given_head(head: LinearProbe, num_classes: int) -> LinearProbe:
    if not hasattr(head, "weight_") or head.weight_.shape[0] != num_classes:
        shape = tuple(head.weight_.shape) if hasattr(head, "weight_") else "not fitted"
        raise ValueError(f"head= must be a fitted probe with {num_classes} classes for this task, got weight {shape}")
    return head
