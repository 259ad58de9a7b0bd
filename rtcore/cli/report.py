"""What the command line reports while it works: an evaluation's progress and estimate, a sweep's progress, and
the sanity flags as lines of text (:mod:`rtcore.cli` runs the commands).

Progress goes to the ``rtcore.cli`` logger; :func:`console` (the command line's ``main``) shows it on stderr,
where a terminal gets one live line that each progress record rewrites. A program that calls the commands
configures ``logging`` as it likes instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..runs import ProgressEvent
from ..runs.estimate import Estimate
from ..runs.progress import fmt_seconds
from ..sanity import FAILED_NOTE, SanityFlag, values_text

if TYPE_CHECKING:
    from ..runs.sweep import SweepEvent

log = logging.getLogger("rtcore.cli")
#: a record with ``extra=LIVE`` rewrites the terminal's current line instead of adding one
LIVE = {"live": True}


class Console(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr as it is when a record arrives; on a terminal a ``live`` record rewrites the current line (covering a
    longer one before it) and the next other record clears it first."""

    def __init__(self) -> None:
        super().__init__()
        self.width = 0

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr
        text = self.format(record)
        live = getattr(record, "live", False) and stream.isatty()
        if self.width:  # a live line is on screen
            stream.write("\r" + (text.ljust(self.width) if live else " " * self.width + "\r"))
        if live:
            stream.write("" if self.width else "\r" + text)
            self.width = max(self.width, len(text))
        else:
            stream.write(text + "\n")
            self.width = 0
        stream.flush()


@contextmanager
def console() -> Iterator[None]:
    """Show the ``rtcore.cli`` records on stderr while the block runs (the command line's ``main``)."""
    handler = Console()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    old_level, old_propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


class Progress:
    """An evaluation's progress: one live line on a terminal; in a log (not a terminal) one line per stage and
    task, with the time spent and the time left of the event (the one estimate, measured on the units run so far:
    :class:`~rtcore.runs.progress.TimeLeft`; the plan's estimate is reported before)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: tuple[str, str | None] | None = None

    def __call__(self, ev: ProgressEvent) -> None:
        where = f" [{ev.task}]" if ev.task else ""
        left = "" if ev.stage == "done" else f", about {fmt_seconds(ev.left)} left" if ev.left is not None else \
            ", time left measured after the first computed unit"
        line = f"{100 * ev.fraction:5.1f}% {ev.stage}{where} · unit {min(ev.done + 1, ev.total)}/{ev.total} · " \
               f"{fmt_seconds(ev.seconds)} spent{left}"
        if self.tty or (ev.stage, ev.task) != self.last:
            log.info(line, extra=LIVE if ev.stage != "done" else None)
        self.last = (ev.stage, ev.task)


def estimate_lines(est: Estimate) -> list[str]:
    """The plan's units, image-steps and estimated time, and the units that could not be estimated."""
    return [f"plan: {est.units} units, {est.image_steps:,} image-steps on {est.device} "
            f"({1000 * est.seconds_per_step:.3g} ms each, measured): about {fmt_seconds(est.estimated_seconds)} "
            "if nothing is cached", *(f"  not estimated (this unit will fail): {why}" for why in est.skipped)]


def sanity_lines(flags: dict[str, list[SanityFlag]]) -> list[str]:
    """One line per task; a flagged task gets one line per failed check, with its numbers."""
    lines = ["", "sanity checks (rtcore.sanity):"]
    for task, fl in flags.items():
        failed = [f for f in fl if not f.passed]
        skipped = [f.name for f in fl if f.skipped]
        note = f" (skipped: {', '.join(skipped)})" if skipped else ""
        if not failed:
            lines.append(f"  {task}: ok{note}")
            continue
        lines.append(f"  {task}: FLAGGED ({', '.join(f.name for f in failed)}): {FAILED_NOTE}{note}")
        lines += [f"    ! {f.name}: {values_text(f.values)}; expected: {f.threshold}; {f.meaning}" for f in failed]
    return lines


class SweepPrinter:
    """A sweep's progress: a line per finished or failed unit with the counts, the measured throughput and the
    time left; on a terminal also a live line for the running unit, in a log a line a minute."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_line = time.monotonic()

    def __call__(self, ev: SweepEvent) -> None:
        kind = ev.kind
        if kind in ("unit-progress", "tick", "unit-start"):
            if self.tty:
                what = f"{ev.unit} {100 * (ev.fraction or 0.0):3.0f}%" if kind == "unit-progress" else ev.line()
                log.info(f"  {what}"[:150], extra=LIVE)
            elif kind != "unit-start" and time.monotonic() - self.last_line > 60:
                running = f" · {ev.unit} {100 * (ev.fraction or 0.0):.0f}%" if kind == "unit-progress" else ""
                log.info(f"  {ev.line()}{running}")
                self.last_line = time.monotonic()
            return
        if kind in ("start", "done"):
            log.info(ev.message)
        elif kind == "unit-done":
            log.info(f"done   {ev.unit} ({ev.seconds:.0f} s) | {ev.line()}")
        elif kind == "unit-failed":
            log.info(f"FAILED {ev.unit}: {ev.message} | {ev.line()}")
        elif kind == "retry":
            log.info(f"retry  {ev.unit}: {ev.message}")
        self.last_line = time.monotonic()
