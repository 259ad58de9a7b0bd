"""Fashion-MNIST: finding a copy, reading it (IDX, no pickle), and the upstream pretraining split.

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
4. the data folder in torchvision's layout (where the online ``fashion-mnist`` task downloads
   to: ``$RTCORE_DATA_DIR``, else ``<cache dir>/data``; then ``~/.cache/rtcore/data``);
5. the bundled subset ``assets/data/fashion-mnist-subset`` (train indices
   50000-55999, test indices 0-3999), so the offline tasks work anywhere.

A full copy gives downstream tasks 10000 train / 10000 test images over ten
classes, the bundled subset 6000 / 4000; :attr:`Task.source` records which.

Raw arrays are memoised per folder (cleared with :func:`rtcore.data.clear_task_cache`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ASSETS_DIR
from ..errors import TaskUnavailableError
from .idx import IDXFormatError, read_idx
from .paths import data_dirs, norm_root
from .registry import on_clear
from .task import Task

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Fashion-MNIST classes the upstream backbone is pretrained on.
UPSTREAM_CLASSES: tuple[int, ...] = (0, 1, 2, 3, 4)
#: First Fashion-MNIST train index held out from pretraining (downstream train splits use [50000, 60000)).
HELDOUT_START = 50000

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



class _NoFullCopyError(TaskUnavailableError):
    """No full Fashion-MNIST copy anywhere in the search order (as opposed to a broken one)."""


# --------------------------------------------------------------------------- Fashion-MNIST


@dataclass(frozen=True)
class FashionArrays:
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
def _read_fmnist_folder(folder_str: str) -> FashionArrays:
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
    return FashionArrays(
        folder=folder, full=not subset,
        x_train=arr["train_images"], y_train=arr["train_labels"].astype(np.int64),
        i_train=index["train"],
        x_test=arr["test_images"], y_test=arr["test_labels"].astype(np.int64),
        i_test=index["test"],
    )


def _fmnist_candidates(root: str | None, data_dir: str | None = None) -> list[tuple[str, Path]]:
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
        cands += [("rtcore data folder", d) for d in data_dirs(None, data_dir)]
    return cands


def load_fashion_mnist(root: str | None, *, require_full: bool, data_dir: str | None = None) -> FashionArrays:
    """First Fashion-MNIST copy in the search order; the bundled subset last unless ``require_full``."""
    searched = []
    for label, folder in _fmnist_candidates(root, data_dir):
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
            "set RTCORE_FASHION_MNIST, or run create_task('fashion-mnist', download=True) once."
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


def _fmnist_source(data: FashionArrays) -> str:
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


def fmnist_heldout(root: str | None, data_dir: str | None = None) -> Task:
    """All ten classes: train from held-out train indices >= 50000, test from the official test set."""
    data = load_fashion_mnist(root, require_full=False, data_dir=data_dir)
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
    data = load_fashion_mnist(norm_root(root), require_full=True)
    keep = (data.i_train < HELDOUT_START) & np.isin(data.y_train, UPSTREAM_CLASSES)
    return (_to_tensor_u8(data.x_train[keep]), torch.from_numpy(data.y_train[keep].copy()),
            tuple(FASHION_MNIST_CLASSES[c] for c in UPSTREAM_CLASSES))




on_clear(_read_fmnist_folder.cache_clear)
