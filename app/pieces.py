"""Finished steps shared by every job of the process, and loaded tasks (built once per process)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from rtcore import Evaluation, load_task

from .plan import EvalRequest, Step


def piece_key(request: EvalRequest, step: Step) -> tuple[object, ...]:
    """What determines a step's result (not its place in a plan)."""
    return (step.ref, step.probe, step.task, step.eps, step.full, request.norm, request.n, request.attack,
            request.seed, request.cache_dir)


class PieceStore:
    """Finished steps by :func:`piece_key`, least recently used out: a new request that shares
    steps with an earlier one (an added eps, a task more) starts from them at once."""

    def __init__(self, max_items: int = 512) -> None:
        self._items: OrderedDict[tuple[object, ...], tuple[Evaluation, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_items = max_items

    def get(self, key: tuple[object, ...]) -> tuple[Evaluation, tuple[str, ...]] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[object, ...], ev: Evaluation, class_names: tuple[str, ...]) -> None:
        with self._lock:
            self._items[key] = (ev, class_names)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


PIECES = PieceStore()
_TASKS: dict[str, object] = {}
_TASKS_LOCK = threading.Lock()


def cached_task(name: str) -> object:
    """A loaded task, once per process (generated tasks take a second or two to build)."""
    with _TASKS_LOCK:
        if name not in _TASKS:
            _TASKS[name] = load_task(name)
        return _TASKS[name]


