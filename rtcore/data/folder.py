"""Reading an image folder in torchvision's ImageFolder layout (``folder:PATH`` tasks).

See :mod:`rtcore.data.user` for the layout, the modes, depths and sizes, and what is checked.
:func:`scan_folder` lists and checks without opening an image; :func:`read_image_folder`
decodes, through the verified disk cache of :mod:`rtcore.data.task_cache` keyed by the files' contents.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import file_sha256
from ..budget import MemoryBudget, input_budget
from .refs import TaskDataError, TaskTooLargeError, UserRef, missing_error
from .task_cache import array_shapes, check_labels, read_arrays, tasks_cache_dir, write_arrays

__all__ = ["IMAGE_FORMATS", "MIXED_SIZES", "RACY_WINDOW_S", "FolderListing", "image_extensions", "read_image_folder",
           "scan_folder"]

log = logging.getLogger(__name__)

#: what to do with images of different sizes in one folder
MIXED_SIZES: tuple[str, ...] = ("resize", "refuse")
#: files modified this recently make a listing untrustworthy as a cache key
RACY_WINDOW_S = 2.0
_DIGESTS: dict[tuple[str, str], str] = {}  # FolderListing.digest by (root, stat listing)
#: bump when the folder reader's output changes, so stale folder caches are not reused
READER_VERSION = "1"

#: Pillow formats read from folders: decoded in-process, no external programs
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "TGA", "QOI",
                                  "JPEG2000", "AVIF", "SGI", "PCX")
_SKIPPED_NAMES = frozenset({"thumbs.db", "desktop.ini"})
_GRAY8 = frozenset({"1", "L", "LA", "La"})
_GRAY16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_OPEN_LOCK = threading.Lock()  # Pillow's bomb guard is a module global: set and used under this lock


def check_mixed_sizes(mixed_sizes: str) -> None:
    """ValueError unless ``mixed_sizes`` is one of :data:`MIXED_SIZES`."""
    if mixed_sizes not in MIXED_SIZES:
        raise ValueError(f"mixed_sizes={mixed_sizes!r} is not one of {list(MIXED_SIZES)}")


@dataclass(frozen=True)
class _File:
    rel: str  # posix path relative to the task folder
    path: str
    label: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int


@dataclass(frozen=True)
class FolderListing:
    """The image files of a folder task, by split, with their labels and stat data."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[_File, ...]
    test: tuple[_File, ...]

    def digest(self) -> str:
        """sha256 of (relative path, content sha256) of every file: the disk-cache key. It follows the bytes, so a
        folder with other pixels never reads another's cached arrays (whatever the sizes and mtimes), and a moved
        folder keeps its key. Hashing costs far less than decoding; memoised per process by the stat listing
        (:meth:`signature`), so the task reader and a spec's digest hash the files once."""
        memo = (str(self.root), repr(self.signature()))
        if memo in _DIGESTS:
            return _DIGESTS[memo]
        h = hashlib.sha256()
        for c in self.classes:
            h.update(c.encode("utf-8", "surrogateescape") + b"\0")
        for f in (*self.train, *self.test):
            try:
                content = file_sha256(self.root / f.rel)
            except OSError as exc:
                raise TaskDataError(f"folder:{self.root}: cannot read {f.rel} ({exc.strerror or exc}). Fix: make "
                                    "the file readable or remove it") from None
            h.update(f"{f.rel}\0{content}\0".encode("utf-8", "surrogateescape"))
        _DIGESTS[memo] = h.hexdigest()
        return _DIGESTS[memo]

    def signature(self) -> tuple[object, ...]:
        """Everything stat says about the files (adds ctime and inode): the in-process memo key."""
        return (self.classes, [(f.rel, f.size, f.mtime_ns, f.ctime_ns, f.ino) for f in (*self.train, *self.test)])

    def racy(self) -> bool:
        """Whether a file was modified in the last :data:`RACY_WINDOW_S` seconds (or in the future)."""
        newest = max(f.mtime_ns for f in (*self.train, *self.test))
        return newest >= time.time_ns() - int(RACY_WINDOW_S * 1e9)


def image_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) read as images: those Pillow registers for :data:`IMAGE_FORMATS`."""
    from PIL import Image

    exts = {e.lower() for e, fmt in Image.registered_extensions().items() if fmt in IMAGE_FORMATS}
    return frozenset(exts | {".mpo"})  # multi-picture JPEG: opened by the JPEG reader


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.lower() in _SKIPPED_NAMES or name == "__MACOSX"


def _layout_hint(root: Path) -> str:
    return f"arrange the images as {root}/train/<class>/<image> and {root}/test/<class>/<image>"


def _class_dirs(root: Path, split: str) -> list[str]:
    folder = root / split
    if not folder.is_dir():
        found = sorted(e.name for e in os.scandir(root) if not _skipped(e.name))
        raise TaskDataError(f"folder:{root} has no {split}/ folder (it holds: {', '.join(found) or 'nothing'}). "
                            f"Fix: {_layout_hint(root)}")
    exts = image_extensions()
    classes, strays = [], []
    with os.scandir(folder) as it:
        for e in it:
            if _skipped(e.name):
                continue
            if e.is_dir():
                classes.append(e.name)
            elif Path(e.name).suffix.lower() in exts:
                strays.append(e.name)
    if strays:
        shown = ", ".join(sorted(strays)[:3])
        raise TaskDataError(f"folder:{root}: {split}/ holds images outside class folders ({shown}"
                            f"{', ...' if len(strays) > 3 else ''}). Fix: move each image into {split}/<class>/")
    if not classes:
        raise TaskDataError(f"folder:{root}: {split}/ has no class folders. Fix: {_layout_hint(root)}")
    return sorted(classes)


def _class_files(root: Path, split: str, cls: str, label: int, exts: frozenset[str]) -> list[_File]:
    """The image files under ``root/split/cls``, recursive, symlinked folders followed once, in
    torchvision's order (folders by path, then files by name)."""
    top = os.path.join(root, split, cls)
    cut = len(str(root)) + 1
    out: list[tuple[str, str, _File]] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        for fn in filenames:
            if _skipped(fn):
                continue
            path = os.path.join(dirpath, fn)
            ext = os.path.splitext(fn)[1].lower()
            if ext not in exts:
                raise TaskDataError(
                    f"{path}: not an image file rtcore reads (extension {ext or 'none'!r}; read: "
                    f"{', '.join(sorted(exts))}). Fix: convert it to PNG or JPEG, or move it out of {top}")
            try:
                st = os.stat(path)
            except OSError as exc:
                raise TaskDataError(f"{path}: cannot be read ({exc}). Fix: repair or remove the file") from exc
            if not stat.S_ISREG(st.st_mode):
                raise TaskDataError(f"{path}: not a regular file (a pipe, device or socket). Fix: remove it from {top}")
            rel = path[cut:].replace(os.sep, "/")
            out.append((dirpath, fn, _File(rel, path, label, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [f for _, _, f in out]


def scan_folder(root: str | os.PathLike[str]) -> FolderListing:
    """List a ``folder:`` task's images and check the layout (no image is opened).

    Checks: the folder exists (else :class:`TaskUnavailableError`), has ``train/`` and ``test/``
    with the same class folders, at least two classes, at least one image per class and split,
    and no file that is not an image (see the module docstring).
    """
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.exists():
        raise missing_error(UserRef("folder", root))
    if not root.is_dir():
        hint = f" (an array file? use npz:{root})" if root.suffix.lower() == ".npz" else ""
        raise TaskDataError(f"folder:{root} is a file, not a folder{hint}. Fix: {_layout_hint(root)}")
    train, test = _class_dirs(root, "train"), _class_dirs(root, "test")
    only = {s: sorted(set(a) - set(b)) for s, a, b in (("train", train, test), ("test", test, train))}
    if only["train"] or only["test"]:
        parts = [f"{', '.join(map(repr, v))} only in {s}/" for s, v in only.items() if v]
        raise TaskDataError(f"folder:{root}: the splits have different classes ({'; '.join(parts)}). Fix: give "
                            "train/ and test/ the same class folders (the probe needs training images of every "
                            "class it is tested on)")
    if len(train) < 2:
        raise TaskDataError(f"folder:{root} has {len(train)} class ({train[0]!r}); a classification task needs at "
                            "least 2. Fix: add a folder per class in train/ and test/")
    exts = image_extensions()
    splits: dict[str, list[_File]] = {}
    for split in ("train", "test"):
        files: list[_File] = []
        for label, cls in enumerate(train):
            found = _class_files(root, split, cls, label, exts)
            if not found:
                raise TaskDataError(f"folder:{root}: class folder {split}/{cls} holds no images. Fix: add images "
                                    f"to it, or remove the class {cls!r} from both splits")
            files += found
        splits[split] = files
    return FolderListing(root, tuple(train), tuple(splits["train"]), tuple(splits["test"]))


# --------------------------------------------------------------------------- folder decoding


@dataclass(frozen=True)
class _Plan:
    """What the decoded folder will be: channels, bit depth, size, and how many images are resized."""

    channels: int
    depth: int
    size: tuple[int, int]  # (H, W)
    resized: int
    sizes: Counter[tuple[int, int]]


def _open(path: str, budget: MemoryBudget) -> Any:
    """``PIL.Image.open`` restricted to :data:`IMAGE_FORMATS` (the header only: no pixel is decoded), errors
    naming the file; an image above the budget's pixel limit is refused here, before decoding. Pillow's
    bomb guard is set to that limit while opening (it raises above twice it, before this check can; the
    message then gives the size from a second look at the header, :func:`_bomb_size`)."""
    from PIL import Image

    try:
        with _OPEN_LOCK:
            Image.MAX_IMAGE_PIXELS = budget.max_image_pixels
            im = Image.open(path, formats=list(IMAGE_FORMATS))
    except Image.DecompressionBombError as exc:
        size = _bomb_size(path, budget)
        raise TaskTooLargeError(budget.pixels_problem(path, *size) if size else budget.image_refusal(
            path, f"is refused by Pillow's decompression-bomb guard, set to this limit ({exc})")) from None
    except Exception as exc:  # UnidentifiedImageError, OSError, ...
        raise TaskDataError(f"{path}: not a readable image ({type(exc).__name__}: {exc}). Fix: re-save it as "
                            "PNG or JPEG, or remove it") from exc
    problem = budget.pixels_problem(path, *im.size)
    if problem:
        im.close()
        raise TaskTooLargeError(problem)
    return im


def _bomb_size(path: str, budget: MemoryBudget) -> tuple[int, int] | None:
    """(width, height) from the header of an image Pillow's guard refused, read with the guard at 1000x the
    limit (still on), for the message; None when even that refuses it or it cannot be read."""
    from PIL import Image

    try:
        with _OPEN_LOCK:
            Image.MAX_IMAGE_PIXELS = 1000 * budget.max_image_pixels
            try:
                with Image.open(path, formats=list(IMAGE_FORMATS)) as im:
                    return im.size
            finally:
                Image.MAX_IMAGE_PIXELS = budget.max_image_pixels
    except Exception:  # noqa: BLE001 - only improves a message
        return None


def _plan(listing: FolderListing, mixed_sizes: str, budget: MemoryBudget) -> _Plan:
    """Open every image's header (no decoding): modes and sizes decide channels, depth and size."""
    gray, sixteen, sizes, examples = True, False, Counter(), {}
    for f in (*listing.train, *listing.test):
        with _open(f.path, budget) as im:
            mode, (w, h) = im.mode, im.size
        if mode in ("I", "F"):
            raise TaskDataError(f"{f.path}: mode {mode!r} ({'32-bit integer' if mode == 'I' else 'float'} pixels) "
                                "has no defined [0, 1] range. Fix: save it as an 8- or 16-bit image, or give the "
                                "data as npz: with floats in [0, 1]")
        gray &= mode in _GRAY8 or mode in _GRAY16
        sixteen |= mode in _GRAY16
        sizes[(h, w)] += 1
        examples.setdefault((h, w), f.rel)
    size = max(sizes, key=lambda s: (sizes[s], s[0] * s[1], s))
    if len(sizes) > 1 and mixed_sizes == "refuse":
        found = ", ".join(f"{w}x{h} ({n}, e.g. {examples[(h, w)]})" for (h, w), n in sizes.most_common(5))
        raise TaskDataError(f"folder:{listing.root}: images have {len(sizes)} different sizes (width x height: "
                            f"{found}{', ...' if len(sizes) > 5 else ''}). Fix: resize them to one size, or load "
                            "with mixed_sizes='resize' to resize them to the most common size")
    n = len(listing.train) + len(listing.test)
    return _Plan(1 if gray else 3, 16 if sixteen else 8, size, n - sizes[size], sizes)


def _pixels(path: str, plan: _Plan, budget: MemoryBudget) -> np.ndarray:
    """One image as (C, H, W) uint8 (8-bit plan) or uint16 (16-bit plan) at the plan's size."""
    from PIL import Image

    h, w = plan.size
    with _open(path, budget) as im:
        try:
            im.load()
            if im.mode in _GRAY16:
                a = np.asarray(im).astype(np.uint16)
                if a.shape != (h, w):
                    f = Image.fromarray(a.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR)
                    a = np.clip(np.rint(np.asarray(f)), 0, 65535).astype(np.uint16)
            else:
                if im.mode in _GRAY8:
                    im = im.convert("L")
                else:
                    if im.mode in ("P", "PA"):
                        im = im.convert("RGBA")
                    im = im.convert("RGB")
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(im)
                if plan.depth == 16:
                    a = a.astype(np.uint16) * np.uint16(257)
        except TaskDataError:
            raise
        except Exception as exc:  # truncated data, broken stream, unsupported conversion
            raise TaskDataError(f"{path}: the image cannot be decoded ({type(exc).__name__}: {exc}). Fix: re-save "
                                "it as PNG or JPEG, or remove it") from exc
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if a.shape[0] != plan.channels:
        a = np.repeat(a, plan.channels, axis=0)
    return a


def _decode_folder(listing: FolderListing, plan: _Plan, budget: MemoryBudget) -> dict[str, np.ndarray]:
    """The four arrays of a folder: images uint8/uint16 (N, C, H, W), labels int64 (N,)."""
    dtype = np.uint16 if plan.depth == 16 else np.uint8
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        files = getattr(listing, split)
        x = np.empty((len(files), plan.channels, *plan.size), dtype=dtype)
        for i, f in enumerate(files):
            x[i] = _pixels(f.path, plan, budget)
        out[f"x_{split}"] = x
        out[f"y_{split}"] = np.array([f.label for f in files], dtype=np.int64)
    return out


def _folder_meta(listing: FolderListing, mixed_sizes: str) -> dict[str, Any]:
    import PIL

    return {"kind": "folder", "reader": READER_VERSION, "pillow": PIL.__version__, "listing": listing.digest(),
            "mixed_sizes": mixed_sizes, "classes": list(listing.classes),
            "n_train": len(listing.train), "n_test": len(listing.test)}


def _read_folder_cache(path: Path, meta: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays, info = read_arrays(path, meta)
    check_labels(arrays, len(meta["classes"]))
    x = arrays["x_train"]
    if x.dtype not in (np.uint8, np.uint16) or x.shape[1] not in (1, 3):
        raise ValueError(f"images {x.dtype} {x.shape} are not (N, 1 or 3, H, W) uint8/uint16")
    if (len(arrays["y_train"]), len(arrays["y_test"])) != (meta["n_train"], meta["n_test"]):
        raise ValueError("image counts differ from the listing")
    if not isinstance(info.get("resized"), int) or info.get("depth") != (16 if x.dtype == np.uint16 else 8):
        raise ValueError(f"info {info} does not describe the arrays")
    return arrays, info


def _check_size(listing: FolderListing, chw: tuple[int, ...], budget: MemoryBudget) -> None:
    """Refuse a task whose float32 images (C, H, W each) would take more than the budget, or whose image size
    is above its pixel limit."""
    n = len(listing.train) + len(listing.test)
    c, hh, ww = chw
    problem = budget.bytes_problem(f"folder:{listing.root}: {n} images of {c}x{hh}x{ww} (float32)",
                                   4 * n * int(np.prod(chw))) or budget.pixels_problem(
        f"folder:{listing.root}: each image", ww, hh)
    if problem:
        raise TaskTooLargeError(problem)


def read_image_folder(root: str | os.PathLike[str], *, mixed_sizes: str = "resize",
                      cache_dir: str | os.PathLike[str] | None = None,
                      max_input_bytes: int | MemoryBudget | None = None
                      ) -> tuple[dict[str, np.ndarray], FolderListing, dict[str, Any]]:
    """Decode a folder task into arrays (from the verified disk cache under ``cache_dir`` when valid).

    Returns ``(arrays, listing, info)``: images uint8/uint16 (N, C, H, W), labels int64, and
    ``info`` with the bit ``depth`` and the number of ``resized`` images. ``cache_dir=None``: no
    disk cache is read or written. ``max_input_bytes``: the input memory budget
    (:func:`rtcore.budget.input_budget`; default ``$RTCORE_MAX_INPUT_GB`` or 4 GB): an image above its
    pixel limit, or a task whose float32 images would be larger, is refused with
    :class:`TaskTooLargeError` from the image headers (or the cache file's header), before decoding.
    """
    check_mixed_sizes(mixed_sizes)
    budget = input_budget(max_input_bytes)
    listing = scan_folder(root)
    meta = _folder_meta(listing, mixed_sizes)
    path = None
    if cache_dir is not None and not listing.racy():
        path = tasks_cache_dir(cache_dir) / f"folder-{meta['listing'][:32]}-{mixed_sizes}.safetensors"
        if path.exists():
            try:
                _check_size(listing, tuple(array_shapes(path)["x_train"][0][1:]), budget)
                arrays, info = _read_folder_cache(path, meta)
            except TaskTooLargeError:
                raise
            except (ValueError, OSError, KeyError) as exc:
                log.warning("ignoring invalid folder-task cache %s (%s); reading %s again", path, exc, listing.root)
            else:
                return arrays, listing, info
    plan = _plan(listing, mixed_sizes, budget)
    _check_size(listing, (plan.channels, *plan.size), budget)
    arrays = _decode_folder(listing, plan, budget)
    info = {"depth": plan.depth, "resized": plan.resized}
    if path is not None:
        try:
            write_arrays(path, arrays, meta, info)
        except OSError as exc:
            log.warning("could not write folder-task cache %s (%s); continuing without it", path, exc)
    return arrays, listing, info
