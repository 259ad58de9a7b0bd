"""The time estimate of a job: seconds per unit of work, measured on the steps that computed something
(a (task, eps) unit of attack work, a probe fit), never elapsed time divided by the fraction done."""

from __future__ import annotations

from collections import defaultdict

from .plan import ATTACK, CACHED, EXTRA, HEADLOSS, PROBE, Step

# relative cost of a unit of each kind, used only until that kind has been measured
PRIOR_COST: dict[str, float] = {PROBE: 2.0, ATTACK: 1.0, HEADLOSS: 0.8, EXTRA: 1.8, CACHED: 0.0}
CACHED_STEP_S = 0.3  # overhead of a step whose results are all cached, until measured


class Throughput:
    """Seconds per unit of work, per kind, measured on the steps that actually computed something."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.units: dict[str, int] = defaultdict(int)
        self.cached_s: list[float] = []

    def record(self, step: Step, seconds: float, computed: bool) -> None:
        if computed and step.units > 0:
            self.seconds[step.kind] += seconds
            self.units[step.kind] += step.units
        else:
            self.cached_s.append(seconds)

    def rate(self, kind: str) -> float | None:
        """Measured seconds per unit of ``kind``; else scaled from a measured kind by the priors."""
        if self.units.get(kind):
            return self.seconds[kind] / self.units[kind]
        for other in (ATTACK, EXTRA, HEADLOSS, PROBE):
            if self.units.get(other) and PRIOR_COST[other] > 0:
                return self.seconds[other] / self.units[other] * PRIOR_COST[kind] / PRIOR_COST[other]
        return None

    def step_seconds(self, step: Step) -> float | None:
        overhead = sum(self.cached_s) / len(self.cached_s) if self.cached_s else CACHED_STEP_S
        if step.units == 0 or step.kind == CACHED:
            return overhead
        r = self.rate(step.kind)
        return None if r is None else r * step.units

    def eta(self, remaining: list[Step], current: Step | None, current_fraction: float) -> float | None:
        """Seconds left for ``remaining`` plus the unfinished part of ``current``; None before any measurement."""
        if not any(self.units.values()):
            return None
        total = 0.0
        for i, step in enumerate(([current] if current is not None else []) + remaining):
            s = self.step_seconds(step)
            if s is None:
                return None
            total += s * (1 - current_fraction) if (i == 0 and current is not None) else s
        return total

    def describe(self) -> str:
        parts = []
        if self.units.get(ATTACK):
            parts.append(f"{self.seconds[ATTACK] / self.units[ATTACK]:.1f} s per (task, ε)")
        if self.units.get(PROBE):
            parts.append(f"{self.seconds[PROBE] / self.units[PROBE]:.1f} s per probe fit")
        return ("measured " + " and ".join(parts)) if parts else ""


def fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


