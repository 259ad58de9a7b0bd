"""Progress events and the one time-left estimate: measured seconds per unit of work, never elapsed time
divided by the fraction done.

:class:`ProgressEvent` is what every runner reports (an evaluation's steps, a job of the scheduler, a
transfer comparison). :class:`TimeLeft` records how long each unit took, by kind (a planned unit's stage, a
transfer method, a sweep unit's backbone), and estimates the rest: a kind not measured yet takes the rate of
measured kinds near it (:meth:`TimeLeft.rate`); a unit still running counts
with what is left of its expected time, and a unit running longer than expected raises the rate of its kind
for the units after it at once (the estimate rises smoothly instead of jumping when it finishes). The
scheduler (:mod:`rtcore.runs.scheduler`) and the sweep driver both estimate with it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """A progress report: ``fraction`` of the whole run in [0, 1], the stage, the task, a message; from a
    job: ``done`` of ``total`` steps finished, ``seconds`` elapsed and ``left`` (None until measured)."""

    stage: str
    fraction: float
    task: str | None = None
    message: str = ""
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    left: float | None = None


ProgressCallback = Callable[[ProgressEvent], None]
#: what a unit of work is, for the estimate: (domain, family, name), e.g. ("fast", backbone, "attack"),
#: ("transfer", backbone, "ft") or ("sweep", backbone, "unit"); an unmeasured kind is guessed only within
#: its domain (see :meth:`TimeLeft.rate`)
Kind = tuple[str, str, str]

#: relative cost of one unit of work per kind's name, used only until that kind has been measured (a planned
#: unit's stage; measured on the bundled CNN with the fast attack: a fit costs 3.7 attacks of one eps on 100
#: points, the head-subspace and loss attacks 1.6; the sanity checks are a guess)
PRIOR_COST: dict[str, float] = {"fit": 3.7, "attack": 1.0, "head_loss": 1.6, "sanity": 6.0}
#: seconds of a unit that computed nothing (all read from the cache), until measured
CACHED_UNIT_S = 0.2


class TimeLeft:
    """Seconds per unit of work by :data:`Kind`, measured on the units that computed something; thread-safe."""

    def __init__(self) -> None:
        self._seconds: dict[Kind, float] = defaultdict(float)
        self._work: dict[Kind, float] = defaultdict(float)
        self._cached = [0.0, 0]
        self._lock = threading.Lock()

    def record(self, kind: Kind, work: float, seconds: float, computed: bool = True) -> None:
        """One finished unit: ``work`` units of ``kind`` in ``seconds`` (``computed`` False: all cached)."""
        with self._lock:
            if computed and work > 0:
                self._seconds[kind] += float(seconds)
                self._work[kind] += float(work)
            else:
                self._cached[0] += float(seconds)
                self._cached[1] += 1

    def measured(self) -> dict[Kind, float]:
        """Seconds per unit of work, per measured kind."""
        with self._lock:
            return {k: self._seconds[k] / w for k, w in self._work.items() if w}

    def rate(self, kind: Kind, rates: dict[Kind, float] | None = None) -> float | None:
        """Measured seconds per unit of work of ``kind``; before it was measured, the mean of its family's
        measured names scaled by :data:`PRIOR_COST` (another stage of the same backbone), else the mean of its
        name in other families of its domain (the same stage of another backbone); None before any of those
        (``rates``: a :meth:`measured` already read)."""
        rates = self.measured() if rates is None else rates
        if kind in rates:
            return rates[kind]
        domain, fam, name = kind
        for guess in ([r * PRIOR_COST.get(name, 1.0) / PRIOR_COST.get(k[2], 1.0) for k, r in rates.items()
                       if k[:2] == (domain, fam)],
                      [r for k, r in rates.items() if k[0] == domain and k[2] == name]):
            if guess:
                return sum(guess) / len(guess)
        return None

    def cached_seconds(self) -> float:
        """The measured mean seconds of a unit that computed nothing (:data:`CACHED_UNIT_S` before any)."""
        with self._lock:
            total, count = self._cached
        return total / count if count else CACHED_UNIT_S

    def expected(self, kind: Kind, work: float, rates: dict[Kind, float] | None = None) -> float | None:
        """The expected seconds of ``work`` units of ``kind`` (a unit of no work: the cached overhead)."""
        if work <= 0:
            return self.cached_seconds()
        r = self.rate(kind, rates)
        return None if r is None else r * work

    def rates(self, running: Iterable[tuple[Kind, float, float]] = ()) -> dict[Kind, float]:
        """:meth:`measured`, with the rate of a kind raised to the rate so far of a ``running`` unit (kind, work,
        seconds so far) that is past its expected time."""
        rates = self.measured()
        for kind, work, elapsed in running:
            r = self.rate(kind, rates)
            if r is not None and work > 0 and elapsed / work > r:
                rates[kind] = elapsed / work
        return rates

    def left(self, pending: Iterable[tuple[Kind, float]], running: Iterable[tuple[Kind, float, float]] = (),
             slots: int = 1) -> float | None:
        """Seconds until ``pending`` units (kind, work) and ``running`` ones (kind, work, seconds so far) are
        done on ``slots`` workers, with :meth:`rates` (a running unit past its expected time has nothing left
        and raises its kind's rate); None while a kind has no measured rate."""
        running = list(running)
        rates = self.rates(running)
        longest = total = 0.0
        for kind, work, elapsed in running:
            exp = self.expected(kind, work, rates)
            if exp is None:
                return None
            rest = max(exp - elapsed, 0.0)
            total, longest = total + rest, max(longest, rest)
        for kind, work in pending:
            exp = self.expected(kind, work, rates)
            if exp is None:
                return None
            total += exp
        return max(longest, total / max(int(slots), 1))


def fmt_seconds(s: float) -> str:
    """``42 s`` or ``3 min 05 s``."""
    s = max(0.0, float(s))
    if s < 90:
        return f"{s:.0f} s"
    if s < 3600 * 3:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s / 3600:.1f} h"
