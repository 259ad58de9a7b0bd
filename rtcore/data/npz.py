"""Reading an ``.npz`` of task arrays (``npz:PATH`` tasks), with ``allow_pickle=False``.

See :mod:`rtcore.data.user` for the layout and what is checked. :func:`check_npz_headers` checks
keys, dtypes, shapes and lengths from the ``.npy`` headers alone; :func:`read_npz` reads and
checks everything.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..budget import MemoryBudget, input_budget
from .refs import TaskDataError, TaskTooLargeError, UserRef, missing_error

__all__ = ["NPZ_KEYS", "check_npz_headers", "read_npz"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_error(path: Path, what: str, fix: str) -> TaskDataError:
    return TaskDataError(f"npz:{path}: {what}. Fix: {fix}")


_SAVE_HINT = "np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)"


def _npz_members(path: Path) -> dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members of an npz by array name; errors for a missing/foreign file or missing keys."""
    if not path.exists():
        raise missing_error(UserRef("npz", path))
    if path.is_dir():
        hint = f" (an image folder? use folder:{path})" if (path / "train").is_dir() else ""
        raise _npz_error(path, f"is a folder, not an .npz file{hint}", f"save the arrays with {_SAVE_HINT}")
    if not stat.S_ISREG(path.stat().st_mode):
        raise _npz_error(path, "is not a regular file (a pipe, device or socket)", f"save the arrays with {_SAVE_HINT}")
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
    except (zipfile.BadZipFile, OSError) as exc:
        raise _npz_error(path, f"is not an .npz archive ({exc})", f"save the arrays with {_SAVE_HINT}") from exc
    missing = [k for k in NPZ_KEYS if k not in members]
    if missing:
        raise _npz_error(path, f"has no array{'s' if len(missing) > 1 else ''} {', '.join(missing)} (it holds: "
                               f"{', '.join(sorted(members)) or 'nothing'})", f"save the arrays with {_SAVE_HINT}")
    return members


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one ``.npy`` member from its header (no data read)."""
    fmt = np.lib.format
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:
            shape, _, dtype = fmt._read_array_header(fh, version)  # (3, 0): same layout, utf-8 names
    return tuple(shape), dtype


def _check_x_header(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise _object_error(path, key)
    if len(shape) != 4:
        if len(shape) == 3:
            fix = f"add the channel axis: {key}[:, None] (grayscale) gives (N, 1, H, W)"
        else:
            fix = f"give {key} as (N, C, H, W) images"
        raise _npz_error(path, f"{key} has shape {shape}, not (N, C, H, W)", fix)
    if shape[1] not in (1, 3):
        fix = (f"{key}.transpose(0, 3, 1, 2) turns (N, H, W, C) into (N, C, H, W)" if shape[3] in (1, 3)
               else "give 1 (grayscale) or 3 (RGB) channels")
        raise _npz_error(path, f"{key} has shape {shape}: {shape[1]} channels, not 1 or 3", fix)
    if shape[0] == 0:
        raise _npz_error(path, f"{key} holds no images", "give at least one image per class in each split")
    if not (dtype == np.uint8 or dtype.kind == "f"):
        raise _npz_error(path, f"{key} has dtype {dtype}, not uint8 or float",
                         f"give uint8 pixels (0-255) or floats in [0, 1], e.g. "
                         f"({key} / {key}.max()).astype(np.float32)")


def _check_y_header(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, n: int) -> None:
    if dtype.hasobject:
        raise _object_error(path, key)
    if dtype.kind not in "iu":
        raise _npz_error(path, f"{key} has dtype {dtype}, not an integer type",
                         f"give integer labels 0..K-1, e.g. {key}.astype(np.int64)")
    if len(shape) != 1:
        raise _npz_error(path, f"{key} has shape {shape}, not (N,)", f"flatten it: {key}.reshape(-1)")
    if shape[0] != n:
        xk = "x" + key[1:]
        raise _npz_error(path, f"{key} has {shape[0]} labels but {xk} has {n} images",
                         f"give one label per image in {xk}")


def _object_error(path: Path, key: str) -> TaskDataError:
    return _npz_error(path, f"array {key!r} holds Python objects (dtype=object); they are refused because "
                            "reading them would unpickle", f"save plain numeric arrays: {_SAVE_HINT} with uint8 or "
                                                           "float images and integer labels")


def check_npz_headers(path: Path, max_input_bytes: int | MemoryBudget | None = None) -> None:
    """Cheap check of an ``npz:`` task: keys, dtypes, shapes and lengths from the ``.npy`` headers, and
    that its images fit the input memory budget (:func:`rtcore.budget.input_budget`: each image within
    the pixel limit, all of them as float32 within the bytes) before any array is read."""
    members = _npz_members(path)
    try:
        with zipfile.ZipFile(path) as zf:
            heads = {k: _read_header(zf, members[k]) for k in NPZ_KEYS}
            if "classes" in members:
                heads["classes"] = _read_header(zf, members["classes"])
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _npz_error(path, f"has a corrupt array header ({exc})", f"save it again with {_SAVE_HINT}") from exc
    for split in ("train", "test"):
        _check_x_header(path, f"x_{split}", *heads[f"x_{split}"])
        _check_y_header(path, f"y_{split}", *heads[f"y_{split}"], heads[f"x_{split}"][0][0])
    if heads["x_train"][0][1:] != heads["x_test"][0][1:]:
        raise _npz_error(path, f"train images {heads['x_train'][0][1:]} and test images {heads['x_test'][0][1:]} "
                               "differ in (C, H, W)", "give both splits images of one shape")
    if "classes" in heads and heads["classes"][1].hasobject:
        raise _object_error(path, "classes")
    _check_budget(path, heads, input_budget(max_input_bytes))


def _check_budget(path: Path, heads: dict[str, tuple[tuple[int, ...], np.dtype]], budget: MemoryBudget) -> None:
    """TaskTooLargeError when an image is above the pixel limit, or the arrays as they will be held (images
    float32, labels int64, the class names as stored) above the budget: from the headers alone."""
    (n_tr, c, h, w), n_te = heads["x_train"][0], heads["x_test"][0][0]
    held = {"x_train": 4, "x_test": 4, "y_train": 8, "y_test": 8}
    need = sum(math.prod(shape) * held.get(k, dtype.itemsize) for k, (shape, dtype) in heads.items())
    problem = (budget.pixels_problem(f"npz:{path}: each image", w, h)
               or budget.bytes_problem(f"npz:{path}: {n_tr} + {n_te} images of {c}x{h}x{w} (float32)", need))
    if problem:
        raise TaskTooLargeError(problem)


def _load_npz_array(npz: Any, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(npz[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise _object_error(path, key) from exc
        raise _npz_error(path, f"array {key!r} cannot be read ({exc})", f"save it again with {_SAVE_HINT}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _npz_error(path, f"array {key!r} is corrupt ({type(exc).__name__}: {exc})",
                         f"save it again with {_SAVE_HINT}") from exc


def _npz_classes(npz: Any, path: Path, k_labels: int) -> tuple[str, ...]:
    if "classes" not in npz.files:
        return tuple(str(i) for i in range(k_labels))
    c = _load_npz_array(npz, path, "classes")
    if c.ndim != 1 or c.dtype.kind not in "US":
        raise _npz_error(path, f"classes has dtype {c.dtype} shape {c.shape}, not a list of strings",
                         "give classes=np.array(['cat', 'dog', ...]) (one name per label) or leave it out")
    names = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in c.tolist())
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or any(not n.strip() for n in names):
        raise _npz_error(path, f"classes {list(names)} has {'duplicate names ' + str(dup) if dup else 'empty names'}",
                         "give one distinct, non-empty name per label")
    return names


def read_npz(path: str | os.PathLike[str], *, max_input_bytes: int | MemoryBudget | None = None
             ) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Read and fully check an ``npz:`` task: ``(arrays, classes)`` with images uint8 or float32.

    Loaded with ``allow_pickle=False``; every check of :mod:`rtcore.data.user` applies.
    ``max_input_bytes``: the input memory budget (see :func:`check_npz_headers`), checked from the
    headers before any array is read (:class:`TaskTooLargeError`).
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    check_npz_headers(path, max_input_bytes)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _npz_error(path, f"cannot be read ({exc})", f"save it again with {_SAVE_HINT}") from exc
    with npz:
        arrays = {k: _load_npz_array(npz, path, k) for k in NPZ_KEYS}
        for split in ("train", "test"):  # headers were checked; the loaded arrays must agree
            _check_x_header(path, f"x_{split}", arrays[f"x_{split}"].shape, arrays[f"x_{split}"].dtype)
            _check_y_header(path, f"y_{split}", arrays[f"y_{split}"].shape, arrays[f"y_{split}"].dtype,
                            len(arrays[f"x_{split}"]))
        for split in ("train", "test"):
            y = arrays[f"y_{split}"]
            if y.min() < 0:
                i = int(np.argmax(y < 0))
                raise _npz_error(path, f"y_{split}[{i}] = {int(y[i])} is negative",
                                 "give labels 0..K-1 (class indices)")
        ys = np.concatenate([arrays["y_train"], arrays["y_test"]])
        has_names = "classes" in npz.files
        limit = min(len(arrays["y_train"]), len(arrays["y_test"]))  # every class needs an image in each split
        if not has_names and int(ys.max()) >= limit:
            split = "train" if int(arrays["y_train"].max()) >= limit else "test"
            y = arrays[f"y_{split}"]
            i = int(np.argmax(y >= limit))
            raise _npz_error(path, f"y_{split}[{i}] = {int(y[i])} cannot be a class index: with "
                                   f"{len(arrays['y_train'])} train and {len(arrays['y_test'])} test images there are "
                                   f"at most {limit} classes", "give labels 0..K-1 (class indices) without gaps")
        classes = _npz_classes(npz, path, int(ys.max()) + 1)
    k = len(classes)
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if int(y.max()) >= k:
            i = int(np.argmax(y >= k))
            raise _npz_error(path, f"y_{split}[{i}] = {int(y[i])} is out of range 0..{k - 1} for the {k} names in "
                                   "classes", "give labels 0..K-1 with one name per label in classes")
        absent = sorted(set(range(k)) - set(np.unique(y).tolist()))
        if absent:
            shown = absent[:10]
            more = f" and {len(absent) - len(shown)} more" if len(absent) > len(shown) else ""
            what = (f"classes {[classes[a] for a in shown]}" if has_names else f"labels {shown}") + more
            raise _npz_error(path, f"{what} have no {split} images (y_{split} never takes "
                                   f"{'them' if len(absent) > 1 else 'it'})",
                             "give every class images in both splits, or relabel the classes 0..K-1 without gaps")
        arrays[f"y_{split}"] = y.astype(np.int64)
    if k < 2:
        raise _npz_error(path, "has 1 class; a classification task needs at least 2",
                         "give labels of 2 or more classes")
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.dtype.kind == "f":
            finite = np.isfinite(x)
            bad = ~finite | (x < 0) | (x > 1)
            if bad.any():
                i = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
                vals = x[finite]
                span = f"its finite values span [{vals.min():g}, {vals.max():g}]" if vals.size else "no value is finite"
                nonfinite = int((~finite).sum())
                extra = f", and it has {nonfinite} NaN or infinite values" if nonfinite else ""
                hi = float(vals.max()) if vals.size else 0.0
                fix = "divide by 255" if 1 < hi <= 255 else "scale the images into [0, 1]"
                raise _npz_error(path, f"x_{split} has values outside [0, 1], first in image {i}; {span}{extra}",
                                 f"{fix}, or give uint8 pixels")
            arrays[f"x_{split}"] = x.astype(np.float32)
    return arrays, classes
