"""The task registry: :func:`register_task`, :func:`list_tasks`, :func:`task_info`, :func:`load_task`."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .paths import norm_root
from .task import Task

_CLEAR_HOOKS: list[Callable[[], None]] = []


def on_clear(hook: Callable[[], None]) -> None:
    """Run ``hook`` whenever :func:`clear_task_cache` forgets the memoised tasks."""
    _CLEAR_HOOKS.append(hook)

DOMAINS: tuple[str, ...] = ("upstream", "near", "out-of-domain")

@dataclass(frozen=True)
class TaskSpec:
    """Registry entry: what a task is and how to load it.

    ``domain`` is one of :data:`DOMAINS`; ``offline`` is True when the task
    loads with no network on any machine (bundled or generated data).
    ``loader(root=..., download=..., seed=...)`` returns the :class:`Task`.
    """

    name: str
    description: str
    domain: str
    offline: bool
    loader: Callable[..., Task]


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(name: str, *, description: str, domain: str, offline: bool
                  ) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator adding ``loader(*, root, download, seed) -> Task`` to the registry as ``name``."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} for task {name!r} is not one of {DOMAINS}")

    def decorator(loader: Callable[..., Task]) -> Callable[..., Task]:
        if name in _REGISTRY:
            raise ValueError(f"task {name!r} is already registered; pick another name")
        _REGISTRY[name] = TaskSpec(name=name, description=description, domain=domain,
                                   offline=bool(offline), loader=loader)
        return loader

    return decorator


def list_tasks(offline_only: bool = False) -> list[str]:
    """Registered task names in registration order (only offline ones if ``offline_only``)."""
    return [n for n, s in _REGISTRY.items() if s.offline or not offline_only]


def task_info(name: str) -> TaskSpec:
    """Registry entry for ``name``; ValueError listing valid names if unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown task {name!r}; valid task names: {', '.join(_REGISTRY)}"
        ) from None


_MEMO: dict[tuple[object, ...], Task] = {}
_MEMO_LOCK = threading.Lock()
_ENV_KEYS = ("RTCORE_FASHION_MNIST", "RTCORE_DATA_DIR")


def load_task(name: str, *, root: str | os.PathLike[str] | None = None, download: bool = False,
              seed: int = 0, cache_dir: str | os.PathLike[str] | None = None) -> Task:
    """Load registered task ``name``.

    ``root``: data folder (Fashion-MNIST folder for the fmnist tasks, download
    folder for online ones).  ``download``: allow online tasks to fetch missing
    files.  ``seed``: generator seed for procedural tasks (ignored by the
    others).  ``cache_dir``: where generated data is cached (default: the result
    cache folder, ``$RTCORE_CACHE_DIR`` or ``~/.cache/rtcore``).  Results are memoised per (name, root, seed, data environment
    variables); the tensors are shared, so do not modify them in place.

    Raises ValueError for an unknown name or bad seed and
    :class:`TaskUnavailableError` when the data is missing.
    """
    spec = task_info(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    nroot = norm_root(root)
    cdir = norm_root(cache_dir)
    key = (name, nroot, int(seed), cdir, tuple(os.environ.get(k) for k in (*_ENV_KEYS, "RTCORE_CACHE_DIR")))
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
    if hit is not None:
        return hit
    task = spec.loader(root=nroot, download=bool(download), seed=int(seed), cache_dir=cdir)
    with _MEMO_LOCK:
        return _MEMO.setdefault(key, task)


def clear_task_cache() -> None:
    """Forget memoised tasks and raw Fashion-MNIST arrays (the disk cache is untouched)."""
    with _MEMO_LOCK:
        _MEMO.clear()
    for hook in _CLEAR_HOOKS:
        hook()


