"""Progress events and the time estimate: measured seconds per unit of work, never elapsed time divided
by the fraction done.

:class:`Throughput` records how long each unit took and whether it computed anything (a unit whose
results were all cached costs only its overhead); the estimate of the remaining units uses the rate
measured for their stage, or, before that stage has run, another stage's rate scaled by the prior
relative costs below.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .plan import Unit


@dataclass(frozen=True)
class ProgressEvent:
    """A progress report: ``fraction`` of the whole run in [0, 1], the stage, the task, a message."""

    stage: str
    fraction: float
    task: str | None = None
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]

#: relative cost of one unit of work per stage, used only until that stage has been measured
PRIOR_COST: dict[str, float] = {"fit": 2.0, "attack": 1.0, "head_loss": 0.8, "sanity": 6.0}
#: seconds of a unit whose results are all cached, until measured
CACHED_UNIT_S = 0.2


class Throughput:
    """Seconds per unit of work, per stage, measured on the units that computed something."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = defaultdict(float)
        self._work: dict[str, float] = defaultdict(float)
        self._cached: list[float] = []
        self._lock = threading.Lock()

    def record(self, unit: Unit, seconds: float, computed: bool) -> None:
        with self._lock:
            if computed and unit.work > 0:
                self._seconds[unit.stage] += seconds
                self._work[unit.stage] += unit.work
            else:
                self._cached.append(seconds)

    def rate(self, stage: str) -> float | None:
        """Measured seconds per unit of work of ``stage``, else scaled from a measured stage; None before any."""
        with self._lock:
            if self._work.get(stage):
                return self._seconds[stage] / self._work[stage]
            for other in ("attack", "head_loss", "fit", "sanity"):
                if self._work.get(other):
                    return self._seconds[other] / self._work[other] * PRIOR_COST[stage] / PRIOR_COST[other]
        return None

    def unit_seconds(self, unit: Unit, cached: bool = False) -> float | None:
        """The expected seconds of ``unit`` (``cached``: its results are known to be on disk)."""
        with self._lock:
            overhead = sum(self._cached) / len(self._cached) if self._cached else CACHED_UNIT_S
        if cached or unit.work == 0:
            return overhead
        r = self.rate(unit.stage)
        return None if r is None else r * unit.work

    def eta(self, remaining: Sequence[Unit], current_fraction: float = 0.0) -> float | None:
        """Seconds left for ``remaining`` (the first one ``current_fraction`` done); None before any measurement."""
        total = 0.0
        for i, unit in enumerate(remaining):
            s = self.unit_seconds(unit)
            if s is None:
                return None
            total += s * (1.0 - current_fraction) if i == 0 else s
        return total

    def measured(self) -> dict[str, float]:
        """Seconds per unit of work, per measured stage."""
        with self._lock:
            return {k: self._seconds[k] / w for k, w in self._work.items() if w}


def fmt_seconds(s: float) -> str:
    """``42 s`` or ``3 min 05 s``."""
    s = max(0.0, float(s))
    if s < 90:
        return f"{s:.0f} s"
    if s < 3600 * 3:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s / 3600:.1f} h"
