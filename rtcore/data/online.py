"""Online tasks (torchvision downloads): MNIST, Fashion-MNIST, CIFAR-10/100, SVHN."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import TaskUnavailableError
from .cifar import CIFARFormatError, read_cifar_bin, read_label_names
from .fashion_mnist import (
    _FMNIST_FILES,
    FASHION_MNIST_CLASSES,
    _fmnist_folder_in,
    _idx_path,
    load_fashion_mnist,
    _NoFullCopyError,
    _read_fmnist_folder,
    _to_tensor_u8,
)
from .idx import IDXFormatError, read_idx
from .paths import data_dirs
from .registry import register_task, task_info
from .task import Task

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- online tasks


def _unavailable(dataset: str, folder: Path, expected: str) -> TaskUnavailableError:
    """Error for an online dataset whose files are absent and download=False."""
    return TaskUnavailableError(
        f"{dataset} is not available offline: no files in {folder} (expected {expected}). "
        f"Fix: create_task(..., download=True) (or --download on the command line) to fetch it "
        f"there, or copy the files into {folder} (choose the folder with root= or "
        "RTCORE_DATA_DIR)."
    )


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None if ``folder`` exists)."""
    missing = None
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing = p
    return missing


def _remove_empty_new_folders(folder: Path, existed: set[Path], top: Path | None) -> None:
    """After a failed download: remove the folders it created under ``folder`` that are still empty,
    then ``folder`` and its new parents up to ``top`` if empty. Files are never removed."""
    if folder.is_dir():
        for dirpath, _, _ in sorted(os.walk(folder), key=lambda t: -len(t[0])):
            p = Path(dirpath)
            if p not in existed:
                try:
                    p.rmdir()
                except OSError:
                    pass
    if top is None:
        return
    for p in (folder, *folder.parents):
        try:
            if p.exists():
                p.rmdir()
        except OSError:  # not empty
            break
        if p == top:
            break


def _download(dataset: str, folder: Path, make: Callable[[], object]) -> None:
    """Run a torchvision download; any failure becomes TaskUnavailableError (chained) and leaves
    no empty folder behind that the attempt created."""
    top = _first_missing(folder)
    existed = {Path(d) for d, _, _ in os.walk(folder)} if top is None else set()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        make()
    except Exception as exc:  # network, HTTP, checksum, disk: all reported the same way
        _remove_empty_new_folders(folder, existed, top)
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


def _ensure_mnist_files(dataset: str, tv_name: str, folders: Sequence[Path], download: bool) -> Path:
    """Folder with MNIST-format IDX files under ``<folder>/<tv_name>/raw`` for the first of ``folders``
    that has them; else downloaded into the first folder if allowed."""
    for cand in folders:
        found = _fmnist_folder_in(cand / tv_name / "raw")
        if found is not None:
            return found
    folder = folders[0]
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
    "mnist", n_test=10000, domain="out-of-domain", offline=False,
    description="MNIST handwritten digits, native 1x28x28 grayscale (60000 train / 10000 test); "
                "IDX files downloaded from torchvision's mirrors and read without pickle.",
)
def _load_mnist(*, root: str | None, download: bool, data_dir: str | None = None) -> Task:
    found = _ensure_mnist_files("mnist", "MNIST", data_dirs(root, data_dir), download)
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
    "fashion-mnist", n_test=10000, domain="upstream", offline=False,
    description="Full Fashion-MNIST, all ten classes (60000 train / 10000 test). WARNING: its train "
                "split contains the upstream pretraining images; use fmnist-* tasks for clean "
                "downstream evaluation.",
)
def _load_fashion_mnist(*, root: str | None, download: bool, data_dir: str | None = None) -> Task:
    try:
        data = load_fashion_mnist(root, require_full=True, data_dir=data_dir)
    except _NoFullCopyError:
        found = _ensure_mnist_files("fashion-mnist", "FashionMNIST", data_dirs(root, data_dir), download)
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


def _load_cifar(name: str, root: str | None, download: bool, data_dir: str | None) -> Task:
    """CIFAR-10/100 from the official binary archives, native 3x32x32 RGB, parsed without pickle."""
    spec = _CIFAR_SPECS[name]
    folders = data_dirs(root, data_dir)

    def missing(sub: Path) -> list[str]:
        return [f for f in spec.files if not (sub / f).is_file()]

    folder = next((f for f in folders if not missing(f / spec.folder)), folders[0])
    sub = folder / spec.folder

    expected = (f"{', '.join(spec.files)} from the official binary archive "
                f"{spec.url.rsplit('/', 1)[-1]} ({spec.url})")
    if missing(sub):
        if not download:
            raise _unavailable(name, sub, expected)
        _download(name, folder,
                  lambda: _download_and_extract_archive(spec.url, folder, md5=spec.md5))
        if missing(sub):
            raise TaskUnavailableError(
                f"{name}: after downloading {spec.url} into {folder}, {', '.join(missing(sub))} are "
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


def _register_cifar(name: str, title: str) -> None:
    """Register ``name`` (a key of :data:`_CIFAR_SPECS`, which gives its split sizes), described as ``title``."""
    n_train, n_test = _CIFAR_SPECS[name].sizes

    def load(*, root: str | None, download: bool, data_dir: str | None = None) -> Task:
        return _load_cifar(name, root, download, data_dir)

    register_task(name, n_test=n_test, domain="out-of-domain", offline=False,
                  description=f"{title}, {_NATIVE_RGB}; {n_train} train / {n_test} test; official binary archive, "
                              "parsed without pickle.")(load)


_register_cifar("cifar10", "CIFAR-10 natural images")
_register_cifar("cifar100", "CIFAR-100 (100 fine classes)")


@register_task(
    "svhn", n_test=26032, domain="out-of-domain", offline=False,
    description=f"SVHN house-number digits, {_NATIVE_RGB}; 73257 train / 26032 test; torchvision "
                "download, needs scipy.",
)
def _load_svhn(*, root: str | None, download: bool, data_dir: str | None = None) -> Task:
    files = ("train_32x32.mat", "test_32x32.mat")
    folders = [d / "svhn" for d in data_dirs(root, data_dir)]
    folder = next((f for f in folders if all((f / n).is_file() for n in files)), folders[0])
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
