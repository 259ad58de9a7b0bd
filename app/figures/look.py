"""How figures look: the colours (Okabe-Ito, a fixed one per name in :mod:`.style`) and one display mode's font
sizes, line widths and marker sizes, normal or presenter (:func:`presenting`: fonts of at least 18 px, thicker
lines, for the back of a room)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

#: Okabe-Ito (colour-blind safe; yellow left out: too light on white), then two dark greys
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#666666")
INK, GRID, NEUTRAL = "#1a1a1a", "#d0d0d0", "#555555"


@dataclass(frozen=True)
class Look:
    """Font sizes (px), line widths and marker sizes of one display mode."""

    font: int
    tick: int
    title: int
    label: int
    line: float
    marker: int
    present: bool = False


NORMAL = Look(font=15, tick=14, title=18, label=14, line=2.5, marker=8)
PRESENTER = Look(font=20, tick=18, title=24, label=18, line=4.5, marker=12, present=True)
_LOOK: ContextVar[Look] = ContextVar("rtcore_look", default=NORMAL)


@contextmanager
def presenting(on: bool = True) -> Iterator[Look]:
    """Figures built inside use the presenter look (fonts >= 18 px, thicker lines) when ``on``."""
    token = _LOOK.set(PRESENTER if on else NORMAL)
    try:
        yield _LOOK.get()
    finally:
        _LOOK.reset(token)


def look() -> Look:
    """The look figures are being built with (:data:`NORMAL` unless inside :func:`presenting`)."""
    return _LOOK.get()
