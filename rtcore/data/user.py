"""Your own downstream data as a task: an image folder (``folder:PATH``) or arrays (``npz:PATH``).

``folder:PATH``: torchvision's ImageFolder layout, ``PATH/train/<class>/*`` and
``PATH/test/<class>/*``. Class names are the folder names, sorted (label ``i`` is the ``i``-th
name), and both splits must have the same classes, each with at least one image. Images in
nested folders of a class are included (sorted by path, as torchvision walks them). Readable
formats: PNG, JPEG, BMP, GIF (first frame), TIFF, WebP, PNM, TGA, QOI, JPEG 2000, AVIF, SGI, PCX
(decoded by Pillow; formats that need an external program, such as EPS, are not read). Hidden
files and folders (``.DS_Store``, ``.ipynb_checkpoints``), ``Thumbs.db`` and ``desktop.ini``
are skipped; any other file in a class folder that is not such an image is an error, so nothing
is silently left out. EXIF orientation is not applied (as torchvision).

* Modes: if every image is grayscale (modes ``1``, ``L``, ``LA``, 16-bit ``I;16``) the task is
  1-channel; otherwise every image is converted to RGB (grayscale repeated on the three
  channels). Alpha is dropped, not composited (as torchvision's ``convert("RGB")``); palette
  images count as colour. 32-bit integer and float images (modes ``I``, ``F``) are refused: their
  value range is not defined.
* Depth: 8-bit images give pixels ``k/255``; if any image is 16-bit, all pixels are ``k/65535``.
* Sizes: with ``mixed_sizes="resize"`` (the default) images of another size are resized to the
  most common size (ties: the larger), bilinear with antialiasing, aspect ratio not kept; the
  task's description says how many were resized. ``mixed_sizes="refuse"`` refuses such a folder
  and lists the sizes found. Eps is measured in the resulting pixel space.

``npz:PATH``: a NumPy ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``: images
(N, C, H, W) with C = 1 or 3, uint8 (pixels ``k/255``) or floats in [0, 1] (kept as float32);
integer labels ``0..K-1``, every class present in both splits; an optional ``classes`` array of K
strings names the classes (default ``"0"``..``"K-1"``). Read with ``allow_pickle=False``.

Every problem raises :class:`TaskDataError` (a ValueError; a missing path
:class:`~rtcore.errors.TaskUnavailableError`) naming the file or value and the fix, before any
image is decoded where a listing can tell (:func:`check_user_ref`). A task's identity in caches is
its content (:attr:`Task.digest`), never its path. Decoded folders are cached as verified arrays
(:mod:`rtcore.data.task_cache`) keyed by the folder's files (relative paths and a sha256 of
each file's bytes): a changed file is re-read, a moved folder is not; a folder with files
modified in the last :data:`RACY_WINDOW_S` seconds (perhaps still being written) is read
without the disk cache.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from ..budget import MemoryBudget
from .folder import MIXED_SIZES, RACY_WINDOW_S, check_mixed_sizes, read_image_folder, scan_folder
from .npz import check_npz_headers, read_npz
from .refs import FOLDER_PREFIX, NPZ_PREFIX, TaskDataError, UserRef, is_user_ref, missing_error, parse_user_ref
from .task import Task

__all__ = ["FOLDER_PREFIX", "MIXED_SIZES", "NPZ_PREFIX", "RACY_WINDOW_S", "TaskDataError", "UserRef",
           "check_user_ref", "describe_user_ref", "is_user_ref", "load_user_task", "parse_user_ref", "user_signature"]


def check_user_ref(ref: str | UserRef) -> UserRef:
    """Check a reference cheaply (listing and file headers, no image decoded); return it parsed.

    Raises :class:`TaskUnavailableError` for a path that does not exist and :class:`TaskDataError`
    for a wrong layout (see the module docstring for what is checked).
    """
    uref = ref if isinstance(ref, UserRef) else parse_user_ref(ref)
    if uref.kind == "folder":
        scan_folder(uref.path)
    else:
        check_npz_headers(uref.path)
    return uref


# --------------------------------------------------------------------------- tasks


def _to_float(x: np.ndarray) -> torch.Tensor:
    """uint8 -> k/255, uint16 -> k/65535, floats as float32; (N, C, H, W) contiguous."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype == np.uint8:
        return t.to(torch.float32).div_(255.0)
    if x.dtype == np.uint16:
        return t.to(torch.float32).div_(65535.0)
    return t.to(torch.float32).contiguous()


def user_signature(ref: str | UserRef, mixed_sizes: str = "resize") -> tuple[object, ...] | None:
    """A cheap content signature of a user task (stat data of its files), or None if it changed too recently
    to be trusted (:data:`RACY_WINDOW_S`): two loads with one signature hold the same data."""
    uref = ref if isinstance(ref, UserRef) else parse_user_ref(ref)
    if uref.kind == "folder":
        listing = scan_folder(uref.path)
        return None if listing.racy() else (mixed_sizes, listing.signature())
    if not uref.path.exists():
        raise missing_error(uref)
    st = uref.path.stat()
    if st.st_mtime_ns >= time.time_ns() - int(RACY_WINDOW_S * 1e9):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def load_user_task(ref: str | UserRef, *, name: str | None = None, mixed_sizes: str = "resize",
                   cache_dir: str | os.PathLike[str] | None = None,
                   max_input_bytes: int | MemoryBudget | None = None) -> Task:
    """Read a ``folder:`` or ``npz:`` task (see the module docstring for the layouts and checks).

    ``name``: the task's name in tables (default: :attr:`UserRef.default_name`). ``cache_dir``:
    where decoded folders are cached (``<cache_dir>/tasks``); None keeps no disk cache.
    ``max_input_bytes``: the input memory budget (:func:`rtcore.budget.input_budget`; default
    ``$RTCORE_MAX_INPUT_GB`` or 4 GB): an image above its pixel limit or a task whose float32 images
    would be larger is refused (:class:`TaskTooLargeError`) from the headers, before decoding.
    """
    check_mixed_sizes(mixed_sizes)
    uref = ref if isinstance(ref, UserRef) else parse_user_ref(ref)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name={name!r} must be a non-empty string")
    tname = name or uref.default_name
    if uref.kind == "folder":
        arrays, listing, info = read_image_folder(uref.path, mixed_sizes=mixed_sizes, cache_dir=cache_dir,
                                                  max_input_bytes=max_input_bytes)
        classes = listing.classes
        c, h, w = arrays["x_train"].shape[1:]
        resized = info["resized"]
        note = "" if not resized else (f" {resized} image{'s' if resized > 1 else ''} of another size resized "
                                       f"to {w}x{h} (bilinear, antialiased).")
        desc = (f"Images from the folder {uref.path} (ImageFolder layout), {'grayscale' if c == 1 else 'RGB'} "
                f"{c}x{h}x{w}, {info['depth']}-bit.{note}")
    else:
        arrays, classes = read_npz(uref.path, max_input_bytes=max_input_bytes)
        c, h, w = arrays["x_train"].shape[1:]
        desc = f"Arrays from {uref.path}, {c}x{h}x{w} {arrays['x_train'].dtype} images."
    n_tr, n_te = len(arrays["y_train"]), len(arrays["y_test"])
    desc += f" {n_tr} train / {n_te} test, {len(classes)} classes."
    return Task(name=tname, x_train=_to_float(arrays["x_train"]), y_train=torch.from_numpy(arrays["y_train"]),
                x_test=_to_float(arrays["x_test"]), y_test=torch.from_numpy(arrays["y_test"]),
                classes=classes, source=uref.ref, description=desc)


def describe_user_ref(ref: str | UserRef) -> str:
    """One line describing a reference (for registry entries), without reading any image."""
    uref = ref if isinstance(ref, UserRef) else parse_user_ref(ref)
    if uref.kind == "folder":
        return f"your images in {uref.path} (ImageFolder layout: train/<class>/*, test/<class>/*)"
    return f"your arrays in {uref.path} (x_train, y_train, x_test, y_test)"

