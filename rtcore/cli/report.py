"""What the command line prints on stderr while it works: an evaluation's progress and estimate, a sweep's
progress, and the sanity flags (:mod:`rtcore.cli` runs the commands)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from ..runs import ProgressEvent
from ..runs.estimate import Estimate
from ..runs.progress import fmt_seconds
from ..sanity import FAILED_NOTE, SanityFlag, values_text

if TYPE_CHECKING:
    from ..runs.sweep import SweepEvent


class Progress:
    """Renders an evaluation's progress on stderr: one live line on a terminal; in a log (not a terminal) one
    line per stage and task, with the time spent and the time left of the event (the one estimate, measured on
    the units run so far: :class:`~rtcore.runs.progress.TimeLeft`; the plan's estimate is printed before)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: tuple[str, str | None] | None = None
        self.width = 0

    def __call__(self, ev: ProgressEvent) -> None:
        where = f" [{ev.task}]" if ev.task else ""
        left = "" if ev.stage == "done" else f", about {fmt_seconds(ev.left)} left" if ev.left is not None else \
            ", time left measured after the first computed unit"
        line = f"{100 * ev.fraction:5.1f}% {ev.stage}{where} · unit {min(ev.done + 1, ev.total)}/{ev.total} · " \
               f"{fmt_seconds(ev.seconds)} spent{left}"
        if self.tty:
            print(f"\r{line}".ljust(self.width), end="\n" if ev.stage == "done" else "", file=sys.stderr, flush=True)
            self.width = max(self.width, len(line) + 1)  # a shorter line covers the longer one before it
        elif (ev.stage, ev.task) != self.last:
            print(line, file=sys.stderr, flush=True)
        self.last = (ev.stage, ev.task)


def print_estimate(est: Estimate) -> None:
    print(f"plan: {est.units} units, {est.image_steps:,} image-steps on {est.device} "
          f"({1000 * est.seconds_per_step:.3g} ms each, measured): about {fmt_seconds(est.estimated_seconds)} if "
          f"nothing is cached", file=sys.stderr, flush=True)
    for why in est.skipped:
        print(f"  not estimated (this unit will fail): {why}", file=sys.stderr, flush=True)


def print_sanity(flags: dict[str, list[SanityFlag]]) -> None:
    """One line per task; a flagged task gets one line per failed check, with its numbers."""
    print("\nsanity checks (rtcore.sanity):")
    for task, fl in flags.items():
        failed = [f for f in fl if not f.passed]
        skipped = [f.name for f in fl if f.skipped]
        note = f" (skipped: {', '.join(skipped)})" if skipped else ""
        if not failed:
            print(f"  {task}: ok{note}")
            continue
        print(f"  {task}: FLAGGED ({', '.join(f.name for f in failed)}): {FAILED_NOTE}{note}")
        for f in failed:
            print(f"    ! {f.name}: {values_text(f.values)}; expected: {f.threshold}; {f.meaning}")


class SweepPrinter:
    """Renders sweep progress on stderr: a line per finished or failed unit with the counts, the measured
    throughput and the time left; on a terminal also a live line for the running unit."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_line = time.monotonic()

    def __call__(self, ev: SweepEvent) -> None:
        kind = ev.kind
        if kind in ("unit-progress", "tick", "unit-start"):
            if self.tty:
                what = f"{ev.unit} {100 * (ev.fraction or 0.0):3.0f}%" if kind == "unit-progress" else ev.line()
                print(f"\r  {what}"[:150].ljust(150), end="", file=sys.stderr, flush=True)
            elif kind != "unit-start" and time.monotonic() - self.last_line > 60:  # a log: a line a minute
                running = f" · {ev.unit} {100 * (ev.fraction or 0.0):.0f}%" if kind == "unit-progress" else ""
                print(f"  {ev.line()}{running}", file=sys.stderr, flush=True)
                self.last_line = time.monotonic()
            return
        if self.tty:
            print("\r" + " " * 150 + "\r", end="", file=sys.stderr)
        if kind == "start":
            print(ev.message, file=sys.stderr, flush=True)
        elif kind == "unit-done":
            print(f"done   {ev.unit} ({ev.seconds:.0f} s) | {ev.line()}", file=sys.stderr, flush=True)
        elif kind == "unit-failed":
            print(f"FAILED {ev.unit}: {ev.message} | {ev.line()}", file=sys.stderr, flush=True)
        elif kind == "retry":
            print(f"retry  {ev.unit}: {ev.message}", file=sys.stderr, flush=True)
        elif kind == "done":
            print(ev.message, file=sys.stderr, flush=True)
        self.last_line = time.monotonic()
