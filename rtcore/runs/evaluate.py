"""Run a whole plan: :func:`execute` runs every unit of a spec in order on one :class:`~rtcore.runs.execute.Executor`
and reports the fraction done, the units done, the seconds and the time left (the one estimate,
:class:`~rtcore.runs.progress.TimeLeft`) as :class:`~rtcore.runs.progress.ProgressEvent`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .execute import Executor
from .plan import Unit, plan, unit_kind
from .progress import ProgressCallback, ProgressEvent, TimeLeft
from .results import Evaluation
from .spec import EvalSpec


def execute(spec: EvalSpec, *, progress: ProgressCallback | None = None, units: Sequence[Unit] | None = None,
            executor: Executor | None = None, **options: object) -> Evaluation:
    """Run every unit of ``spec`` (or the given ``units``) and return the final tables.

    ``options`` go to :class:`Executor` (backbone, tasks, head, cache, cache_dir, use_cache, device).
    ``progress`` gets :class:`ProgressEvent` with the fraction of the whole run done (by image-steps), the units
    done of all, the seconds elapsed and the time left: the one estimate of the scheduler's jobs
    (:class:`~rtcore.runs.progress.TimeLeft`, measured on the units run so far; None before the first unit
    that computed something)."""
    if executor is not None and (options or executor.spec != spec):
        raise ValueError("give either executor= (an Executor of this same spec, with its own options) or the "
                         f"Executor options {sorted(options)}, not both" if options else
                         "executor= runs another spec than the one given; pass Executor(spec) of this spec")
    ex = executor or Executor(spec, **options)  # type: ignore[arg-type]
    todo = list(units) if units is not None else plan(spec)
    report = progress or (lambda ev: None)
    report(ProgressEvent("backbone", 0.0, message="loading the backbone", total=len(todo)))
    ex.backbone()
    weights = [max(ex.steps(u), 1.0) for u in todo]  # image-steps: the fraction done follows time, not stages
    total = sum(weights) or 1.0
    kinds = [unit_kind(u) for u in todo]
    clock, t0, done = TimeLeft(), time.monotonic(), 0.0
    for i, (unit, w) in enumerate(zip(todo, weights)):
        started = time.monotonic()

        def forward(ev: ProgressEvent, base: float = done, w: float = w, i: int = i, started: float = started) -> None:
            now = time.monotonic()
            left = clock.left(kinds[i + 1:], [(*kinds[i], now - started)])
            report(ProgressEvent(ev.stage, (base + w * ev.fraction) / total, ev.task, ev.message, done=i,
                                 total=len(todo), seconds=now - t0, left=left))

        ran = ex.run(unit, forward)
        clock.record(*kinds[i], ran.seconds, ran.computed)
        done += w
    report(ProgressEvent("done", 1.0, done=len(todo), total=len(todo), seconds=time.monotonic() - t0, left=0.0))
    return ex.evaluation()
