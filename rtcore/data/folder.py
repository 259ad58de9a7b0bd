"""Reading an image folder in torchvision's ImageFolder layout (``folder:PATH`` tasks).

See :mod:`rtcore.data.user` for the layout, the modes, depths and sizes, and what is checked.
:func:`scan_folder` (:mod:`rtcore.data.folder_scan`) lists and checks without opening an image;
:func:`read_image_folder` decodes, through the verified disk cache of :mod:`rtcore.data.task_cache` keyed by the
files' contents.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..budget import MemoryBudget, input_budget
from .refs import TaskDataError, TaskTooLargeError
from .folder_scan import IMAGE_FORMATS, RACY_WINDOW_S, FolderListing, image_extensions, scan_folder
from .task_cache import array_shapes, check_labels, read_arrays, tasks_cache_dir, write_arrays

__all__ = ["IMAGE_FORMATS", "MIXED_SIZES", "RACY_WINDOW_S", "FolderListing", "image_extensions", "read_image_folder",
           "scan_folder"]

log = logging.getLogger(__name__)

#: what to do with images of different sizes in one folder
MIXED_SIZES: tuple[str, ...] = ("resize", "refuse")
#: bump when the folder reader's output changes, so stale folder caches are not reused
READER_VERSION = "1"

_GRAY8 = frozenset({"1", "L", "LA", "La"})
_GRAY16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_OPEN_LOCK = threading.Lock()  # Pillow's bomb guard is a module global: set and used under this lock


def check_mixed_sizes(mixed_sizes: str) -> None:
    """ValueError unless ``mixed_sizes`` is one of :data:`MIXED_SIZES`."""
    if mixed_sizes not in MIXED_SIZES:
        raise ValueError(f"mixed_sizes={mixed_sizes!r} is not one of {list(MIXED_SIZES)}")


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
