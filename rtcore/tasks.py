"""Downstream tasks for linear-probe robustness experiments, and the upstream pretraining data.

A :class:`Task` is a small labelled image dataset (train and test splits, all
images float32 in [0, 1], NCHW).  Tasks are looked up by name in an explicit
registry (:func:`list_tasks`, :func:`task_info`, :func:`load_task`).  Images
are in the dataset's native pixel space (Fashion-MNIST, MNIST and the generated
tasks 1x28x28 grayscale; CIFAR-10/100 and SVHN 3x32x32 RGB), because attack
budgets (eps) are measured there: any resizing, channel conversion or
normalisation belongs inside the model (:class:`rtcore.backbones.Backbone`
adapts channels and size).

No data file is ever unpickled: IDX files are read by :mod:`rtcore.data.idx`,
CIFAR from its official binary archives by :mod:`rtcore.data.cifar`, SVHN's
MATLAB files by scipy (through torchvision).

Split integrity (the experiment depends on it)
----------------------------------------------
The upstream backbone is pretrained on Fashion-MNIST *train* images with
original index < 50000 and class 0-4 (:func:`load_upstream`).  Downstream
Fashion-MNIST tasks take their train split only from train indices
[50000, 60000) and their test split from the official test set, so no
downstream task ever contains an upstream training image.  The one exception
is the online ``fashion-mnist`` task (the whole dataset), whose description
says so and whose domain is ``"upstream"``.

Fashion-MNIST sources, first found wins
---------------------------------------
1. the ``root`` argument (a folder holding the four IDX files, raw or ``.gz``,
   or torchvision's ``<root>/FashionMNIST/raw/`` layout); if absent there the
   search goes on, because ``root`` is also the data folder of online tasks;
2. ``$RTCORE_FASHION_MNIST`` (an error if set but holding no files);
3. ``/usr/share/datasets/fashion-mnist`` (Debian package dataset-fashion-mnist);
4. ``$RTCORE_DATA_DIR`` or ``~/.cache/rtcore/data`` in torchvision's layout
   (where the online ``fashion-mnist`` task downloads to);
5. the bundled subset ``assets/data/fashion-mnist-subset`` (train indices
   50000-55999, test indices 0-3999), so the offline tasks work anywhere.

A full copy gives downstream tasks 10000 train / 10000 test images over ten
classes, the bundled subset 6000 / 4000; :attr:`Task.source` records which.

Loaded tasks are memoised in-process per (name, root, seed, relevant
environment variables).  The returned tensors are shared between callers and
must be treated as read-only: clone before modifying.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from rtcore.data.generators import GeneratedData, cached_generate
from rtcore.data.cifar import CIFARFormatError, read_cifar_bin, read_label_names
from rtcore.data.idx import IDXFormatError, read_idx

__all__ = [
    "Task",
    "TaskSpec",
    "TaskUnavailableError",
    "register_task",
    "list_tasks",
    "task_info",
    "load_task",
    "clear_task_cache",
    "subset_task",
    "relabel_task",
    "load_upstream",
    "FASHION_MNIST_CLASSES",
    "UPSTREAM_CLASSES",
    "HELDOUT_START",
    "DOMAINS",
]

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Fashion-MNIST classes the upstream backbone is pretrained on.
UPSTREAM_CLASSES: tuple[int, ...] = (0, 1, 2, 3, 4)
#: First Fashion-MNIST train index held out from pretraining (downstream train splits use [50000, 60000)).
HELDOUT_START = 50000
DOMAINS: tuple[str, ...] = ("upstream", "near", "out-of-domain")

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
BUNDLED_FMNIST_DIR = ASSETS_DIR / "data" / "fashion-mnist-subset"
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: Only in the bundled subset: original Fashion-MNIST index of every stored image.
_INDEX_FILES = {"train": "train-indices-idx1-int", "test": "t10k-indices-idx1-int"}
_FULL_SIZES = {"train": 60000, "test": 10000}
#: sha256 of the decoded image/label arrays (payload after the IDX header) of the official files,
#: taken from Debian's dataset-fashion-mnist; a mismatch only logs a warning.
_FMNIST_CONTENT_SHA256 = {
    "train_images": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "train_labels": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "test_images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "test_labels": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}


class TaskUnavailableError(RuntimeError):
    """A task's data is not available here; the message says what is missing and how to provide it."""


class _NoFullCopyError(TaskUnavailableError):
    """No full Fashion-MNIST copy anywhere in the search order (as opposed to a broken one)."""


# --------------------------------------------------------------------------- Task


@dataclass(frozen=True, eq=False, repr=False)
class Task:
    """A labelled image classification task with train and test splits.

    Images are (N, C, H, W) float32 in [0, 1], contiguous; labels (N,) int64 in
    ``0..num_classes-1``; ``classes[i]`` names label ``i``.  Construction
    validates all of this.  Tasks from :func:`load_task` are shared (memoised):
    do not modify their tensors in place.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    source: str
    description: str = field(default="")

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if not classes:
            raise ValueError(f"task {self.name!r}: classes must be non-empty")
        if len(set(classes)) != len(classes):
            raise ValueError(f"task {self.name!r}: duplicate class names in {classes}")
        object.__setattr__(self, "classes", classes)
        shape = None
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
                raise ValueError(
                    f"task {self.name!r}: x_{split} must be a float32 tensor (N,C,H,W), got "
                    f"{type(x).__name__} {getattr(x, 'dtype', '')} {tuple(getattr(x, 'shape', ()))}"
                )
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
                raise ValueError(
                    f"task {self.name!r}: y_{split} must be an int64 tensor (N,), got "
                    f"{type(y).__name__} {getattr(y, 'dtype', '')} {tuple(getattr(y, 'shape', ()))}"
                )
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"task {self.name!r}: x_{split} has {x.shape[0]} images but y_{split} "
                    f"has {y.shape[0]} labels"
                )
            if x.shape[0] == 0:
                raise ValueError(f"task {self.name!r}: {split} split is empty")
            if shape is not None and x.shape[1:] != shape:
                raise ValueError(
                    f"task {self.name!r}: train images {tuple(shape)} and test images "
                    f"{tuple(x.shape[1:])} differ in shape"
                )
            shape = x.shape[1:]
            lo, hi = float(x.min()), float(x.max())
            if not (0.0 <= lo and hi <= 1.0):  # also rejects NaN
                raise ValueError(f"task {self.name!r}: x_{split} values span [{lo}, {hi}], not [0, 1]")
            ylo, yhi = int(y.min()), int(y.max())
            if ylo < 0 or yhi >= len(classes):
                raise ValueError(
                    f"task {self.name!r}: y_{split} labels span {ylo}..{yhi}, outside "
                    f"0..{len(classes) - 1} for {len(classes)} classes"
                )
            object.__setattr__(self, f"x_{split}", x.contiguous())
            object.__setattr__(self, f"y_{split}", y.contiguous())

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def __repr__(self) -> str:
        return (
            f"Task(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.classes!r}, source={self.source!r})"
        )


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


def _norm_root(root: str | os.PathLike[str] | None) -> str | None:
    """Absolute, user-expanded form of ``root`` (memo key and search path)."""
    return None if root is None else str(Path(root).expanduser().resolve())


def load_task(name: str, *, root: str | os.PathLike[str] | None = None, download: bool = False,
              seed: int = 0) -> Task:
    """Load registered task ``name``.

    ``root``: data folder (Fashion-MNIST folder for the fmnist tasks, download
    folder for online ones).  ``download``: allow online tasks to fetch missing
    files.  ``seed``: generator seed for procedural tasks (ignored by the
    others).  Results are memoised per (name, root, seed, data environment
    variables); the tensors are shared, so do not modify them in place.

    Raises ValueError for an unknown name or bad seed and
    :class:`TaskUnavailableError` when the data is missing.
    """
    spec = task_info(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    nroot = _norm_root(root)
    key = (name, nroot, int(seed), tuple(os.environ.get(k) for k in _ENV_KEYS))
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
    if hit is not None:
        return hit
    task = spec.loader(root=nroot, download=bool(download), seed=int(seed))
    with _MEMO_LOCK:
        return _MEMO.setdefault(key, task)


def clear_task_cache() -> None:
    """Forget memoised tasks and raw Fashion-MNIST arrays (the disk cache is untouched)."""
    with _MEMO_LOCK:
        _MEMO.clear()
    _read_fmnist_folder.cache_clear()


# --------------------------------------------------------------------------- task transforms


def _check_label(value: object, k: int, what: str, context: str) -> int:
    """Return ``value`` as an int label in ``0..k-1`` or raise ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} {value!r} is not an int ({context})")
    if not 0 <= int(value) < k:
        raise ValueError(f"{what} {value!r} is out of range 0..{k - 1} ({context})")
    return int(value)


def _as_list(values: object) -> object:
    """numpy arrays and tensors -> plain lists, so they validate like sequences."""
    if isinstance(values, (np.ndarray, torch.Tensor)):
        return values.tolist()
    return values


def _map_labels(y: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Apply lookup table ``lut`` (old label -> new label, -1 = drop) to ``y``."""
    return lut[y]


def subset_task(task: Task, classes: Sequence[int], *, name: str | None = None) -> Task:
    """Keep only ``classes`` of ``task`` (in the given order) and relabel them ``0..k-1``.

    Example: ``subset_task(t, [5, 7])`` keeps classes 5 and 7 as new labels 0 and 1.
    """
    classes = _as_list(classes)  # type: ignore[assignment]
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a sequence of ints, got {classes!r}")
    if len(classes) == 0:
        raise ValueError(f"classes must be non-empty, got {classes!r}")
    keep = [_check_label(c, task.num_classes, "class", f"task {task.name!r} has "
                         f"{task.num_classes} classes") for c in classes]
    dup = sorted({c for c in keep if keep.count(c) > 1})
    if dup:
        raise ValueError(f"duplicate classes {dup} in {list(classes)!r}")
    lut = torch.full((task.num_classes,), -1, dtype=torch.int64)
    lut[torch.tensor(keep)] = torch.arange(len(keep))
    splits = {}
    for split in ("train", "test"):
        y_new = _map_labels(getattr(task, f"y_{split}"), lut)
        m = y_new >= 0
        if not bool(m.any()):
            raise ValueError(f"classes {list(classes)!r} leave no {split} images in task {task.name!r}")
        splits[split] = (getattr(task, f"x_{split}")[m], y_new[m])
    new_name = name or f"{task.name}[{','.join(map(str, keep))}]"
    return Task(name=new_name, x_train=splits["train"][0], y_train=splits["train"][1],
                x_test=splits["test"][0], y_test=splits["test"][1],
                classes=tuple(task.classes[c] for c in keep), source=task.source,
                description=f"{task.description} Subset of classes {keep} of {task.name}.".strip())


def relabel_task(task: Task, mapping: Mapping[int, int] | Sequence[int],
                 class_names: Sequence[str], *, name: str | None = None) -> Task:
    """Merge/rename classes: old label ``c`` becomes ``mapping[c]``, named ``class_names[mapping[c]]``.

    ``mapping`` must cover every old class (a dict, or a sequence indexed by
    old label) and use every new label at least once.  To drop classes, call
    :func:`subset_task` first.
    """
    k_old = task.num_classes
    mapping = _as_list(mapping)  # type: ignore[assignment]
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names must be a sequence of strings, got {class_names!r}")
    k_new = len(class_names)
    if k_new == 0:
        raise ValueError(f"class_names must be non-empty, got {class_names!r}")
    if isinstance(mapping, Mapping):
        extra = sorted(set(mapping) - set(range(k_old)), key=repr)
        if extra:
            raise ValueError(f"mapping keys {extra} are not classes of task {task.name!r} "
                             f"(valid: 0..{k_old - 1})")
        missing = [c for c in range(k_old) if c not in mapping]
        if missing:
            raise ValueError(f"mapping does not cover old classes {missing} of task {task.name!r}")
        targets = [mapping[c] for c in range(k_old)]
    elif isinstance(mapping, Sequence) and not isinstance(mapping, (str, bytes)):
        if len(mapping) != k_old:
            raise ValueError(f"mapping has length {len(mapping)}, task {task.name!r} has {k_old} "
                             "classes; give one new label per old class")
        targets = list(mapping)
    else:
        raise ValueError(f"mapping must be a dict or a sequence, got {mapping!r}")
    new = [_check_label(t, k_new, f"new label for old class {c}:",
                        f"{k_new} class_names given") for c, t in enumerate(targets)]
    unused = sorted(set(range(k_new)) - set(new))
    if unused:
        raise ValueError(f"new labels {unused} ({[class_names[u] for u in unused]}) receive no old "
                         "class; drop them from class_names")
    lut = torch.tensor(new, dtype=torch.int64)
    return Task(name=name or f"{task.name}-relabelled", x_train=task.x_train,
                y_train=_map_labels(task.y_train, lut), x_test=task.x_test,
                y_test=_map_labels(task.y_test, lut), classes=tuple(class_names),
                source=task.source,
                description=f"{task.description} Relabelled {dict(enumerate(new))}.".strip())


# --------------------------------------------------------------------------- Fashion-MNIST


@dataclass(frozen=True)
class _FashionArrays:
    """Raw Fashion-MNIST arrays from one folder, with original indices of every image."""

    folder: Path
    full: bool
    x_train: np.ndarray  # (N, 28, 28) uint8
    y_train: np.ndarray  # (N,) int64
    i_train: np.ndarray  # (N,) int64 original index
    x_test: np.ndarray
    y_test: np.ndarray
    i_test: np.ndarray


def _idx_path(folder: Path, base: str) -> Path | None:
    """``folder/base`` or ``folder/base.gz``, whichever exists (raw preferred)."""
    for cand in (folder / base, folder / f"{base}.gz"):
        if cand.is_file():
            return cand
    return None


def _fmnist_folder_in(folder: Path) -> Path | None:
    """The folder holding the four Fashion-MNIST files: ``folder``, ``FashionMNIST/raw`` or ``raw``."""
    for cand in (folder, folder / "FashionMNIST" / "raw", folder / "raw"):
        if all(_idx_path(cand, b) is not None for b in _FMNIST_FILES.values()):
            return cand
    return None


@functools.lru_cache(maxsize=4)
def _read_fmnist_folder(folder_str: str) -> _FashionArrays:
    """Read and validate the Fashion-MNIST IDX files in ``folder_str`` (memoised)."""
    folder = Path(folder_str)
    arr: dict[str, np.ndarray] = {}
    digests: dict[str, str] = {}
    for key, base in _FMNIST_FILES.items():
        path = _idx_path(folder, base)
        assert path is not None
        try:
            a = read_idx(path)
        except IDXFormatError as exc:
            raise TaskUnavailableError(
                f"Fashion-MNIST file {path} is corrupt: {exc}. Replace it with a fresh copy."
            ) from exc
        arr[key] = a
        digests[key] = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
    index: dict[str, np.ndarray] = {}
    subset = all(_idx_path(folder, b) is not None for b in _INDEX_FILES.values())
    for split in ("train", "test"):
        x, y = arr[f"{split}_images"], arr[f"{split}_labels"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise TaskUnavailableError(
                f"{folder}: {split} images have shape {x.shape} dtype {x.dtype}, expected "
                "(N, 28, 28) uint8; this is not Fashion-MNIST"
            )
        if y.shape != (x.shape[0],) or (y.size and y.max() > 9):
            raise TaskUnavailableError(
                f"{folder}: {split} labels shape {y.shape} (max {y.max() if y.size else None}) do "
                f"not match {x.shape[0]} images with classes 0..9"
            )
        if subset:
            ipath = _idx_path(folder, _INDEX_FILES[split])
            assert ipath is not None
            idx = read_idx(ipath).astype(np.int64)
            if (idx.shape != y.shape or np.unique(idx).size != idx.size or idx.min() < 0
                    or idx.max() >= _FULL_SIZES[split]):
                raise TaskUnavailableError(f"{ipath}: invalid original-index file for {split}")
        else:
            n_full = _FULL_SIZES[split]
            counts = np.bincount(y, minlength=10)
            if x.shape[0] != n_full or not (counts == n_full // 10).all():
                raise TaskUnavailableError(
                    f"{folder}: {split} split has {x.shape[0]} images with class counts "
                    f"{counts.tolist()}; full Fashion-MNIST has {n_full} with {n_full // 10} per "
                    "class (is this MNIST or a partial copy?)"
                )
            idx = np.arange(n_full, dtype=np.int64)
        index[split] = idx
    if not subset:
        bad = [k for k, d in digests.items() if d != _FMNIST_CONTENT_SHA256[k]]
        if bad:
            log.warning("Fashion-MNIST copy in %s differs from the reference checksums in %s",
                        folder, bad)
    return _FashionArrays(
        folder=folder, full=not subset,
        x_train=arr["train_images"], y_train=arr["train_labels"].astype(np.int64),
        i_train=index["train"],
        x_test=arr["test_images"], y_test=arr["test_labels"].astype(np.int64),
        i_test=index["test"],
    )


def _data_dir(root: str | None) -> Path:
    """Download/data folder for online tasks: ``root``, ``$RTCORE_DATA_DIR`` or ``~/.cache/rtcore/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("RTCORE_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rtcore" / "data"


def _fmnist_candidates(root: str | None) -> list[tuple[str, Path]]:
    """(label, folder) of places to search for a full copy, in priority order."""
    cands: list[tuple[str, Path]] = []
    if root is not None:
        cands.append(("root argument", Path(root).expanduser()))
    env = os.environ.get("RTCORE_FASHION_MNIST")
    if env:
        folder = Path(env).expanduser()
        if _fmnist_folder_in(folder) is None:
            raise TaskUnavailableError(
                f"RTCORE_FASHION_MNIST={env!r} holds no Fashion-MNIST IDX files (looked for "
                f"{', '.join(_FMNIST_FILES.values())} (.gz or raw) in it, in FashionMNIST/raw/ and "
                "raw/). Point it at such a folder or unset it."
            )
        cands.append(("RTCORE_FASHION_MNIST", folder))
    cands.append(("Debian package dataset-fashion-mnist", DEBIAN_FMNIST_DIR))
    if root is None:
        cands.append(("rtcore data folder", _data_dir(None)))
    return cands


def _load_fmnist(root: str | None, *, require_full: bool) -> _FashionArrays:
    """First Fashion-MNIST copy in the search order; the bundled subset last unless ``require_full``."""
    searched = []
    for label, folder in _fmnist_candidates(root):
        found = _fmnist_folder_in(folder)
        searched.append(str(folder))
        if found is None:
            if label == "root argument":
                log.info("no Fashion-MNIST files in root %s; searching further", folder)
            continue
        data = _read_fmnist_folder(str(found.resolve()))
        if data.full or not require_full:
            return data
        log.info("%s holds a Fashion-MNIST subset, not a full copy; searching further", found)
    if require_full:
        raise _NoFullCopyError(
            "the upstream pretraining data needs a full local copy of Fashion-MNIST (the bundled "
            f"subset holds no train images below index {HELDOUT_START}); searched: "
            f"{', '.join(searched)}. Fix: `apt-get install dataset-fashion-mnist`, or put the four "
            "IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a folder and pass root= or "
            "set RTCORE_FASHION_MNIST, or run load_task('fashion-mnist', download=True) once."
        )
    bundled = _fmnist_folder_in(BUNDLED_FMNIST_DIR)
    if bundled is None:
        raise TaskUnavailableError(
            f"no Fashion-MNIST found (searched {', '.join(searched)}) and the bundled subset "
            f"{BUNDLED_FMNIST_DIR} is missing; reinstall rtcore with its assets or regenerate it "
            "with scripts/make_fmnist_subset.py"
        )
    _verify_bundled(bundled)
    return _read_fmnist_folder(str(bundled.resolve()))


@functools.lru_cache(maxsize=1)
def _verify_bundled(folder: Path) -> None:
    """Check the bundled subset against its SHA256SUMS (catches git-lfs pointers, truncation)."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise TaskUnavailableError(f"{sums} is missing; regenerate with scripts/make_fmnist_subset.py")
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, fname = line.split(maxsplit=1)
        path = folder / fname.strip().lstrip("*")
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise TaskUnavailableError(
                f"bundled Fashion-MNIST file {path} is missing or corrupt (sha256 mismatch; a git-lfs "
                "pointer?); restore it from the repository or rerun scripts/make_fmnist_subset.py"
            )


def _to_tensor_u8(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W) in [0, 1], contiguous."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.dim() == 3:
        t = t.unsqueeze(1)
    return t.to(torch.float32).div_(255.0).contiguous()


def _fmnist_source(data: _FashionArrays) -> str:
    """Human-readable provenance of a Fashion-MNIST copy."""
    if data.full:
        return str(data.folder)
    rel = data.folder
    try:
        rel = data.folder.relative_to(ASSETS_DIR.parent)
    except ValueError:
        pass
    return (f"bundled subset {rel} (train indices {int(data.i_train.min())}-"
            f"{int(data.i_train.max())}, test indices {int(data.i_test.min())}-{int(data.i_test.max())})")


def _fmnist_heldout(root: str | None) -> Task:
    """All ten classes: train from held-out train indices >= 50000, test from the official test set."""
    data = _load_fmnist(root, require_full=False)
    keep = data.i_train >= HELDOUT_START
    return Task(
        name="fmnist-heldout",
        x_train=_to_tensor_u8(data.x_train[keep]), y_train=torch.from_numpy(data.y_train[keep]),
        x_test=_to_tensor_u8(data.x_test), y_test=torch.from_numpy(data.y_test),
        classes=FASHION_MNIST_CLASSES, source=_fmnist_source(data),
        description=(f"Fashion-MNIST train images with original index >= {HELDOUT_START} (never "
                     "seen in pretraining) and official test images."),
    )


def load_upstream(root: str | os.PathLike[str] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Pretraining data: real Fashion-MNIST train images with index < 50000 and class 0-4.

    Returns ``(x, y, classes)`` with x (about 25k, 1, 28, 28) float32 in [0, 1]
    and y int64 in 0..4.  Needs a full local copy (see module docstring);
    raises :class:`TaskUnavailableError` otherwise.
    """
    data = _load_fmnist(_norm_root(root), require_full=True)
    keep = (data.i_train < HELDOUT_START) & np.isin(data.y_train, UPSTREAM_CLASSES)
    return (_to_tensor_u8(data.x_train[keep]), torch.from_numpy(data.y_train[keep].copy()),
            tuple(FASHION_MNIST_CLASSES[c] for c in UPSTREAM_CLASSES))


_NOVEL = (5, 6, 7, 8, 9)
_TORSO = (0, 2, 3, 4, 6)


@register_task(
    "fmnist-novel", domain="near", offline=True,
    description="Fashion-MNIST classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot) relabelled "
                "0-4: novel classes from the pretraining domain; train images from held-out "
                "indices >= 50000.",
)
def _load_fmnist_novel(*, root: str | None, download: bool, seed: int) -> Task:
    base = _fmnist_heldout(root)
    t = subset_task(base, _NOVEL, name="fmnist-novel")
    return _with_description(t, task_info("fmnist-novel").description)


@register_task(
    "fmnist-seen", domain="upstream", offline=True,
    description="Fashion-MNIST classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), the "
                "pretraining classes, on held-out images (train indices >= 50000, official test "
                "set): the in-distribution reference.",
)
def _load_fmnist_seen(*, root: str | None, download: bool, seed: int) -> Task:
    base = _fmnist_heldout(root)
    t = subset_task(base, UPSTREAM_CLASSES, name="fmnist-seen")
    return _with_description(t, task_info("fmnist-seen").description)


@register_task(
    "fmnist-torso", domain="near", offline=True,
    description="Binary Fashion-MNIST over all ten classes: torso garment {T-shirt/top, Pullover, "
                "Dress, Coat, Shirt} vs other {Trouser, Sandal, Sneaker, Bag, Ankle boot}; mixes "
                "pretraining and novel classes; held-out images only.",
)
def _load_fmnist_torso(*, root: str | None, download: bool, seed: int) -> Task:
    base = _fmnist_heldout(root)
    mapping = [0 if c in _TORSO else 1 for c in range(10)]
    t = relabel_task(base, mapping, ("torso garment", "other"), name="fmnist-torso")
    return _with_description(t, task_info("fmnist-torso").description)


def _with_description(task: Task, description: str) -> Task:
    """Copy of ``task`` (sharing tensors) with a new description."""
    return Task(name=task.name, x_train=task.x_train, y_train=task.y_train, x_test=task.x_test,
                y_test=task.y_test, classes=task.classes, source=task.source,
                description=description)


# --------------------------------------------------------------------------- generated tasks


def _generated_task(name: str, data: GeneratedData, seed: int, description: str) -> Task:
    """Wrap generator output (numpy) as a Task."""
    return Task(name=name, x_train=torch.from_numpy(data.x_train), y_train=torch.from_numpy(data.y_train),
                x_test=torch.from_numpy(data.x_test), y_test=torch.from_numpy(data.y_test),
                classes=data.classes, description=description,
                source=f"procedurally generated by rtcore.data.generators ({name}, seed={seed})")


@register_task(
    "shapes", domain="out-of-domain", offline=True,
    description="dSprites-style shapes (square, ellipse, heart), white on black with random scale, "
                "rotation and position, anti-aliased; 3000 train / 1500 test, balanced; far from "
                "clothing photos.",
)
def _load_shapes(*, root: str | None, download: bool, seed: int) -> Task:
    return _generated_task("shapes", cached_generate("shapes", seed=seed), seed,
                           task_info("shapes").description)


@register_task(
    "glyphs", domain="out-of-domain", offline=True,
    description="Digits 0-9 rendered with Pillow's built-in font, a seven-segment and a "
                "hand-drawn stroke font, random size, position, rotation, stroke width and "
                "additive noise; 5000 train / 2000 test, balanced; out of the clothing domain.",
)
def _load_glyphs(*, root: str | None, download: bool, seed: int) -> Task:
    return _generated_task("glyphs", cached_generate("glyphs", seed=seed), seed,
                           task_info("glyphs").description)


# --------------------------------------------------------------------------- online tasks


def _unavailable(dataset: str, folder: Path, expected: str) -> TaskUnavailableError:
    """Error for an online dataset whose files are absent and download=False."""
    return TaskUnavailableError(
        f"{dataset} is not available offline: no files in {folder} (expected {expected}). "
        f"Fix: load_task(..., download=True) (or --download on the command line) to fetch it "
        f"there, or copy the files into {folder} (choose the folder with root= or "
        "RTCORE_DATA_DIR)."
    )


def _download(dataset: str, folder: Path, make: Callable[[], object]) -> None:
    """Run a torchvision download; any failure becomes TaskUnavailableError (chained)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        make()
    except Exception as exc:  # network, HTTP, checksum, disk: all reported the same way
        raise TaskUnavailableError(
            f"could not download {dataset} into {folder}: {type(exc).__name__}: {exc}. Check "
            f"network access, or download the files on another machine and copy them into {folder}."
        ) from exc


def _tv_datasets():  # -> module
    """torchvision.datasets, imported lazily (looked up at call time so tests can patch it)."""
    import torchvision.datasets as tvd

    return tvd


def _download_and_extract_archive(url: str, download_root: Path, **kwargs: object) -> None:
    """torchvision.datasets.utils.download_and_extract_archive, looked up at call time (patchable)."""
    import torchvision.datasets.utils as tvu

    tvu.download_and_extract_archive(url, str(download_root), **kwargs)


def _mnist_download(tv_name: str, raw: Path) -> None:
    """Fetch the four IDX .gz files of torchvision's ``tv_name`` class into ``raw`` (md5-checked).

    Uses the class's ``mirrors`` and ``resources`` lists but never instantiates it:
    torchvision's MNIST constructor would ``torch.load`` a legacy ``processed/*.pt``
    cache if one were present, and rtcore never unpickles data files.
    """
    cls = getattr(_tv_datasets(), tv_name)
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in cls.resources:
        if _idx_path(raw, filename[:-3] if filename.endswith(".gz") else filename) is not None:
            continue
        errors: list[Exception] = []
        for mirror in cls.mirrors:
            try:
                _download_and_extract_archive(f"{mirror}{filename}", raw, filename=filename, md5=md5)
                break
            except Exception as exc:  # try the next mirror
                log.warning("downloading %s from %s failed (%s: %s)", filename, mirror,
                            type(exc).__name__, exc)
                errors.append(exc)
        else:
            raise errors[-1]  # every mirror failed; _download reports it


def _ensure_mnist_files(dataset: str, tv_name: str, folder: Path, download: bool) -> Path:
    """Folder with MNIST-format IDX files under ``folder/<tv_name>/raw``; downloaded there if allowed."""
    raw = folder / tv_name / "raw"
    expected = "train-images-idx3-ubyte(.gz) and the 3 other IDX files"
    if _fmnist_folder_in(raw) is None:
        if not download:
            raise _unavailable(dataset, raw, expected)
        _download(dataset, folder, lambda: _mnist_download(tv_name, raw))
    found = _fmnist_folder_in(raw)
    if found is None:
        raise _unavailable(dataset, raw, expected)
    return found


def _read_idx_checked(path: Path | None) -> np.ndarray:
    """read_idx with corrupt files reported as TaskUnavailableError."""
    assert path is not None
    try:
        return read_idx(path)
    except IDXFormatError as exc:
        raise TaskUnavailableError(f"{exc}. Delete the file and download it again.") from exc


@register_task(
    "mnist", domain="out-of-domain", offline=False,
    description="MNIST handwritten digits, native 1x28x28 grayscale (60000 train / 10000 test); "
                "IDX files downloaded from torchvision's mirrors and read without pickle.",
)
def _load_mnist(*, root: str | None, download: bool, seed: int) -> Task:
    found = _ensure_mnist_files("mnist", "MNIST", _data_dir(root), download)
    arr = {k: _read_idx_checked(_idx_path(found, b)) for k, b in _FMNIST_FILES.items()}
    for split in ("train", "test"):
        x, y = arr[f"{split}_images"], arr[f"{split}_labels"]
        if (x.ndim != 3 or x.dtype != np.uint8 or y.shape != (x.shape[0],)
                or (y.size and int(y.max()) > 9)):
            raise TaskUnavailableError(
                f"mnist files in {found}: {split} images {x.shape} {x.dtype} and labels {y.shape} "
                "are not MNIST (N,28,28) uint8 with labels 0..9; delete them and download again"
            )
    return Task(name="mnist", x_train=_to_tensor_u8(arr["train_images"]),
                y_train=torch.from_numpy(arr["train_labels"].astype(np.int64)),
                x_test=_to_tensor_u8(arr["test_images"]),
                y_test=torch.from_numpy(arr["test_labels"].astype(np.int64)),
                classes=tuple(str(i) for i in range(10)), source=str(found),
                description=task_info("mnist").description)


@register_task(
    "fashion-mnist", domain="upstream", offline=False,
    description="Full Fashion-MNIST, all ten classes (60000 train / 10000 test). WARNING: its train "
                "split contains the upstream pretraining images; use fmnist-* tasks for clean "
                "downstream evaluation.",
)
def _load_fashion_mnist(*, root: str | None, download: bool, seed: int) -> Task:
    try:
        data = _load_fmnist(root, require_full=True)
    except _NoFullCopyError:
        found = _ensure_mnist_files("fashion-mnist", "FashionMNIST", _data_dir(root), download)
        data = _read_fmnist_folder(str(found.resolve()))
    return Task(name="fashion-mnist", x_train=_to_tensor_u8(data.x_train),
                y_train=torch.from_numpy(data.y_train), x_test=_to_tensor_u8(data.x_test),
                y_test=torch.from_numpy(data.y_test), classes=FASHION_MNIST_CLASSES,
                source=str(data.folder), description=task_info("fashion-mnist").description)


@dataclass(frozen=True)
class _CifarSpec:
    """Layout of one official binary CIFAR archive."""

    url: str
    md5: str
    folder: str  # top-level folder inside the archive
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    names_file: str
    num_labels: tuple[int, ...]  # classes per label byte (CIFAR-100: coarse, fine)
    sizes: tuple[int, int]  # official (train, test) sizes; a mismatch only logs a warning

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.names_file)


_CIFAR_SPECS = {
    "cifar10": _CifarSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        names_file="batches.meta.txt",
        num_labels=(10,),
        sizes=(50000, 10000),
    ),
    "cifar100": _CifarSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        md5="03b5dce01913d631647c71ecec9e9cb8",
        folder="cifar-100-binary",
        train_files=("train.bin",),
        test_files=("test.bin",),
        names_file="fine_label_names.txt",
        num_labels=(20, 100),
        sizes=(50000, 10000),
    ),
}


def _read_cifar_split(name: str, sub: Path, files: Sequence[str], spec: _CifarSpec
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the binary files of one split: images (N,3,32,32) uint8, last label byte (N,)."""
    xs, ys = [], []
    for f in files:
        try:
            x, y = read_cifar_bin(sub / f, label_bytes=len(spec.num_labels),
                                  num_labels=spec.num_labels)
        except CIFARFormatError as exc:
            raise TaskUnavailableError(
                f"{name} file is corrupt: {exc}. Delete {sub} and load with download=True "
                f"(or re-extract {spec.url.rsplit('/', 1)[-1]})."
            ) from exc
        xs.append(x)
        ys.append(y[:, -1])  # CIFAR-10: the label; CIFAR-100: the fine label
    return np.concatenate(xs), np.concatenate(ys)


def _load_cifar(name: str, root: str | None, download: bool) -> Task:
    """CIFAR-10/100 from the official binary archives, native 3x32x32 RGB, parsed without pickle."""
    spec = _CIFAR_SPECS[name]
    folder = _data_dir(root)
    sub = folder / spec.folder

    def missing() -> list[str]:
        return [f for f in spec.files if not (sub / f).is_file()]

    expected = (f"{', '.join(spec.files)} from the official binary archive "
                f"{spec.url.rsplit('/', 1)[-1]} ({spec.url})")
    if missing():
        if not download:
            raise _unavailable(name, sub, expected)
        _download(name, folder,
                  lambda: _download_and_extract_archive(spec.url, folder, md5=spec.md5))
        if missing():
            raise TaskUnavailableError(
                f"{name}: after downloading {spec.url} into {folder}, {', '.join(missing())} are "
                f"still missing from {sub}; delete {folder / spec.url.rsplit('/', 1)[-1]} and retry"
            )
    x_tr, y_tr = _read_cifar_split(name, sub, spec.train_files, spec)
    x_te, y_te = _read_cifar_split(name, sub, spec.test_files, spec)
    if (len(y_tr), len(y_te)) != spec.sizes:
        log.warning("%s in %s has %d train / %d test images; the official release has %d / %d",
                    name, sub, len(y_tr), len(y_te), *spec.sizes)
    try:
        classes = read_label_names(sub / spec.names_file, spec.num_labels[-1])
    except CIFARFormatError as exc:
        raise TaskUnavailableError(
            f"{name} class-name file is corrupt: {exc}. Delete {sub} and load with download=True."
        ) from exc
    return Task(name=name, x_train=_to_tensor_u8(x_tr), y_train=torch.from_numpy(y_tr),
                x_test=_to_tensor_u8(x_te), y_test=torch.from_numpy(y_te),
                classes=classes, source=str(sub), description=task_info(name).description)


_NATIVE_RGB = ("native 3x32x32 RGB; the backbone wrapper adapts channels and size inside the "
               "model so eps stays in native pixel units")


@register_task(
    "cifar10", domain="out-of-domain", offline=False,
    description=f"CIFAR-10 natural images, {_NATIVE_RGB}; 50000 train / 10000 test; official "
                "binary archive, parsed without pickle.",
)
def _load_cifar10(*, root: str | None, download: bool, seed: int) -> Task:
    return _load_cifar("cifar10", root, download)


@register_task(
    "cifar100", domain="out-of-domain", offline=False,
    description=f"CIFAR-100 (100 fine classes), {_NATIVE_RGB}; 50000 train / 10000 test; official "
                "binary archive, parsed without pickle.",
)
def _load_cifar100(*, root: str | None, download: bool, seed: int) -> Task:
    return _load_cifar("cifar100", root, download)


@register_task(
    "svhn", domain="out-of-domain", offline=False,
    description=f"SVHN house-number digits, {_NATIVE_RGB}; 73257 train / 26032 test; torchvision "
                "download, needs scipy.",
)
def _load_svhn(*, root: str | None, download: bool, seed: int) -> Task:
    folder = _data_dir(root) / "svhn"
    files = ("train_32x32.mat", "test_32x32.mat")
    if not all((folder / f).is_file() for f in files) and not download:
        raise _unavailable("svhn", folder, " and ".join(files))
    try:
        import scipy.io  # noqa: F401  (torchvision's SVHN reader needs it)
    except ImportError as exc:
        raise TaskUnavailableError(
            "svhn needs scipy to read its .mat files: `pip install scipy`"
        ) from exc
    cls = _tv_datasets().SVHN
    made: dict[str, object] = {}

    def make() -> None:
        made["train"] = cls(str(folder), split="train", download=download)
        made["test"] = cls(str(folder), split="test", download=download)

    if download:
        _download("svhn", folder, make)
    else:
        try:
            make()
        except Exception as exc:
            raise TaskUnavailableError(
                f"svhn files in {folder} failed to load ({type(exc).__name__}: {exc}); delete "
                "them and load with download=True"
            ) from exc
    split_xy = []
    for split in ("train", "test"):
        ds = made[split]
        x = np.asarray(ds.data)  # (N, 3, 32, 32) uint8, RGB
        y = np.asarray(ds.labels, dtype=np.int64)  # torchvision maps the .mat label 10 to 0
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or y.shape != (len(x),):
            raise TaskUnavailableError(
                f"svhn {split} file in {folder} gives images {x.shape} {x.dtype} and labels "
                f"{y.shape}, not (N,3,32,32) uint8; delete it and load with download=True"
            )
        split_xy.append((x, y))
    (x_tr, y_tr), (x_te, y_te) = split_xy
    return Task(name="svhn", x_train=_to_tensor_u8(x_tr), y_train=torch.from_numpy(y_tr),
                x_test=_to_tensor_u8(x_te), y_test=torch.from_numpy(y_te),
                classes=tuple(str(i) for i in range(10)), source=str(folder),
                description=task_info("svhn").description)
