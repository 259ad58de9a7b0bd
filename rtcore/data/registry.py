"""The task registry and task references.

Verbs (the shape of :class:`rtcore.registry.Registry`): :func:`register_task`, :func:`list_tasks`,
:func:`task_info`, :func:`create_task`. Wherever a task name is accepted,
a reference to your own data is too: ``folder:PATH`` (an ImageFolder layout) or ``npz:PATH`` (arrays),
see :mod:`rtcore.data.user`. :func:`check_task_ref` checks a name or reference cheaply, before any
long work; :func:`is_task_ref` only looks at the string.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..budget import MemoryBudget, input_budget
from ..config import default_cache_dir, resolve_cache_dir
from ..errors import CacheDirError
from ..registry import Registry
from .folder import MIXED_SIZES, check_mixed_sizes, scan_folder
from .paths import default_data_dir, norm_root
from .refs import FOLDER_PREFIX, NPZ_PREFIX, is_user_ref, parse_user_ref
from .task import Task
from .user import check_user_ref, describe_user_ref, load_user_task, user_signature

__all__ = ["DOMAINS", "MIXED_SIZES", "TASKS", "TaskSpec", "check_task_ref", "clear_task_cache", "create_task",
           "is_task_ref", "list_tasks", "register_task", "task_display_name", "task_info"]

_CLEAR_HOOKS: list[Callable[[], None]] = []


def on_clear(hook: Callable[[], None]) -> None:
    """Run ``hook`` whenever :func:`clear_task_cache` forgets the memoised tasks."""
    _CLEAR_HOOKS.append(hook)


#: task domains relative to the upstream pretraining data; "user" is a folder: or npz: reference
DOMAINS: tuple[str, ...] = ("upstream", "near", "out-of-domain", "user")


@dataclass(frozen=True)
class TaskSpec:
    """Registry entry: what a task is and how to load it.

    ``domain`` is one of :data:`DOMAINS`; ``offline`` is True when the task loads with no network
    on any machine (bundled, generated or your own data). ``loader`` is called with the keywords
    it accepts among ``root`` (data folder given by the caller, or None), ``download`` (bool),
    ``seed`` (int), ``cache_dir`` (folder for the task-array cache, or None for no disk cache) and
    ``data_dir`` (where downloads go when ``root`` is None), and returns the :class:`Task`.
    """

    name: str
    description: str
    domain: str
    offline: bool
    loader: Callable[..., Task]
    #: the size of the test split, where it is fixed (None: known once loaded)
    n_test: int | None = None


#: the registered tasks
TASKS: Registry[TaskSpec] = Registry(
    "task", hint=f"or {FOLDER_PREFIX}PATH for an image folder with train/<class>/ and test/<class>/, "
                 f"or {NPZ_PREFIX}PATH for arrays x_train, y_train, x_test, y_test")


def register_task(name: str, *, description: str, domain: str, offline: bool, n_test: int | None = None,
                  overwrite: bool = False) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator adding ``loader`` (see :class:`TaskSpec`) to the registry as ``name``."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} for task {name!r} is not one of {DOMAINS}")
    if is_user_ref(name):
        raise ValueError(f"task name {name!r} starts with {FOLDER_PREFIX!r} or {NPZ_PREFIX!r}, which mark references "
                         "to data on disk; pick another name")
    if not overwrite and name in TASKS:
        raise ValueError(f"task {name!r} is already registered; pick another name")

    def decorator(loader: Callable[..., Task]) -> Callable[..., Task]:
        TASKS.register(TaskSpec(name=name, description=description, domain=domain, offline=bool(offline),
                                loader=loader, n_test=n_test), overwrite=overwrite)
        return loader

    return decorator


def task_test_size(ref: str) -> int | None:
    """The number of test images of a task, without decoding any: from the registry for a task whose test
    split is fixed, from the listing of a ``folder:`` task or the ``y_test`` header of an ``npz:`` task;
    None when only loading tells (a download)."""
    if not is_user_ref(ref):
        return TASKS.info(ref).n_test
    uref = parse_user_ref(ref)
    if uref.kind == "folder":
        return len(scan_folder(uref.path).test)
    import zipfile

    import numpy as np

    with zipfile.ZipFile(uref.path) as zf, zf.open("y_test.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape = read(fh)[0]
    return int(shape[0])


def list_tasks(offline_only: bool = False) -> list[str]:
    """Registered task names in registration order (only offline ones if ``offline_only``).

    ``folder:`` and ``npz:`` references are not listed: any path is one."""
    return TASKS.names(lambda s: s.offline or not offline_only)


def is_task_ref(ref: object) -> bool:
    """Whether ``ref`` names a registered task or is written as ``folder:PATH`` / ``npz:PATH``
    (the path is not looked at: :func:`check_task_ref` does that)."""
    if ref in TASKS:
        return True
    return is_user_ref(ref) and bool(str(ref).partition(":")[2].strip())


def check_task_ref(ref: object) -> str:
    """The canonical form of a task name or reference, checked cheaply (no image decoded, no download).

    A registered name is returned as is; ``folder:PATH`` / ``npz:PATH`` with the path made absolute,
    after checking that it exists and has the right layout (see :func:`rtcore.data.user.check_user_ref`).
    Raises ValueError for an unknown name (listing the valid ones), :class:`TaskDataError` (a
    ValueError) for a bad layout and :class:`TaskUnavailableError` for a path that does not exist.
    """
    if is_user_ref(ref):
        return check_user_ref(str(ref)).ref
    return TASKS.info(ref).name


def task_info(name: str) -> TaskSpec:
    """Registry entry for ``name``; ValueError listing valid names if unknown.

    For a ``folder:`` / ``npz:`` reference the entry is made on the fly from the string alone (no
    file is looked at; :func:`check_task_ref` does that): its ``name`` is the canonical reference
    (absolute path), ``domain`` is ``"user"``, ``offline`` is True.
    """
    if is_user_ref(name):
        uref = parse_user_ref(name)
        return TaskSpec(name=uref.ref, description=describe_user_ref(uref), domain="user", offline=True,
                        loader=functools.partial(_load_user, uref.ref))
    return TASKS.info(name)


def task_display_name(name: str) -> str:
    """The name a task gets in result tables, without loading it: a registered name as is; for a
    reference, the folder's base name or the ``.npz`` file's stem (``folder:~/data/weather`` ->
    ``weather``), unless ``name=`` is given to :func:`create_task`."""
    if is_user_ref(name):
        return parse_user_ref(name).default_name
    return TASKS.info(name).name


def _load_user(ref: str, *, cache_dir: str | None = None, **_: object) -> Task:
    return load_user_task(ref, cache_dir=cache_dir)  # the budget from the environment (or its default)


# --------------------------------------------------------------------------- loading

_MEMO: dict[tuple[object, ...], object] = {}
_MEMO_LOCK = threading.Lock()
_ENV_KEYS = ("RTCORE_FASHION_MNIST", "RTCORE_DATA_DIR", "RTCORE_CACHE_DIR")


@functools.lru_cache(maxsize=None)
def _accepted(loader: Callable[..., Task]) -> frozenset[str] | None:
    """The keyword arguments ``loader`` accepts (None: any)."""
    params = inspect.signature(loader).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is None:
        return default_cache_dir()
    if not str(cache_dir).strip():
        raise CacheDirError(f"cache_dir={str(cache_dir)!r} is empty; pass a folder path (--cache-dir), or "
                            "use_cache=False (--no-cache) to keep no task cache")
    return resolve_cache_dir(cache_dir)


def create_task(name_or_ref: str, *, root: str | os.PathLike[str] | None = None, download: bool = False,
                seed: int = 0, cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True,
                name: str | None = None, mixed_sizes: str = "resize",
                max_input_bytes: int | MemoryBudget | None = None) -> Task:
    """Load a registered task by name, or your own data by ``folder:PATH`` / ``npz:PATH``.

    ``root``: data folder (the Fashion-MNIST folder of the fmnist tasks, the download folder of
    online ones; default ``$RTCORE_DATA_DIR``, else ``<cache dir>/data``). ``download``: allow
    online tasks to fetch missing files. ``seed``: generator seed of procedural tasks (ignored by
    the others). ``cache_dir``: the cache folder (default ``$RTCORE_CACHE_DIR`` or
    ``~/.cache/rtcore``); generated and decoded-folder arrays are cached in ``<cache_dir>/tasks``.
    ``use_cache=False``: no task file is read or written anywhere (downloads asked for with
    ``download=True`` are still stored). With a ``cache_dir``, nothing is written outside it
    unless ``root`` or ``$RTCORE_DATA_DIR`` says so.

    For references only: ``name`` is the task's name in tables (default: the folder's base name
    or the file's stem, see :func:`task_display_name`) and ``mixed_sizes`` says what to do with
    images of different sizes (``"resize"`` to the most common one, or ``"refuse"``); see
    :mod:`rtcore.data.user`. ``root``, ``download`` and ``seed`` do not apply to references.
    ``max_input_bytes``: the input memory budget their images are checked against before decoding
    (:func:`rtcore.budget.input_budget`: default ``$RTCORE_MAX_INPUT_GB`` or 4 GB; a memoised task is
    not checked again).

    Tasks are memoised per process and shared (do not modify their tensors in place). A
    reference is memoised on its files' stat data, so a file changed on disk is read again.

    Raises ValueError for an unknown name or a bad argument, :class:`TaskDataError` (a
    ValueError) for malformed data, and :class:`TaskUnavailableError` when data is missing.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if root is not None and not str(root).strip():
        raise ValueError(f"root={str(root)!r} is empty; pass a data folder path or leave root unset")
    croot = _cache_root(cache_dir)
    tcache = str(croot) if use_cache else None
    budget = input_budget(max_input_bytes)  # ValueError for a bad value, whatever the task
    if is_user_ref(name_or_ref):
        return _create_user(str(name_or_ref), name, mixed_sizes, tcache, budget)
    spec = TASKS.info(name_or_ref)
    if name is not None or mixed_sizes != "resize":
        raise ValueError(f"name= and mixed_sizes= apply to {FOLDER_PREFIX}/{NPZ_PREFIX} references only, not to the "
                         f"registered task {name_or_ref!r}")
    nroot = norm_root(root)
    data_dir = str(default_data_dir(croot))
    key = ("registered", spec.name, nroot, int(seed), tcache, data_dir,
           tuple(os.environ.get(k) for k in _ENV_KEYS))
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
    if isinstance(hit, Task):
        return hit
    kwargs = {"root": nroot, "download": bool(download), "seed": int(seed), "cache_dir": tcache, "data_dir": data_dir}
    accepted = _accepted(spec.loader)
    if accepted is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    task = spec.loader(**kwargs)
    with _MEMO_LOCK:
        return _MEMO.setdefault(key, task)  # type: ignore[return-value]


def _create_user(ref: str, name: str | None, mixed_sizes: str, tcache: str | None, budget: MemoryBudget) -> Task:
    """A ``folder:`` / ``npz:`` task, memoised on (reference, options) while its files' stat data is unchanged."""
    check_mixed_sizes(mixed_sizes)
    uref = parse_user_ref(ref)
    key = ("user", uref.ref, name, mixed_sizes)
    sig = user_signature(uref, mixed_sizes)
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
    if sig is not None and isinstance(hit, tuple) and hit[0] == sig:
        return hit[1]
    task = load_user_task(uref, name=name, mixed_sizes=mixed_sizes, cache_dir=tcache, max_input_bytes=budget)
    with _MEMO_LOCK:
        if sig is None:
            _MEMO.pop(key, None)
        else:
            _MEMO[key] = (sig, task)  # replaces the entry of older content
    return task


def clear_task_cache() -> None:
    """Forget memoised tasks and raw Fashion-MNIST arrays (the disk cache is untouched)."""
    with _MEMO_LOCK:
        _MEMO.clear()
    for hook in _CLEAR_HOOKS:
        hook()

