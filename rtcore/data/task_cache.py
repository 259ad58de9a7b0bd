"""The disk cache of task arrays: generated tasks (:mod:`rtcore.data.generators`) and image folders.

Arrays are cached as safetensors files under ``<cache dir>/tasks/`` (the result cache folder:
``cache_dir=``/``--cache-dir``, else ``$RTCORE_CACHE_DIR`` or ``~/.cache/rtcore``), written
atomically with a JSON description of what they depend on and the sha256 of the arrays, and
read back without pickle. A cache file that fails any check (unreadable header, wrong keys,
shapes, dtypes, value range, metadata or digest) is rebuilt and overwritten, never trusted.

:func:`write_arrays` / :func:`read_arrays` are the shared mechanics; :func:`cached_generate`
uses them for the procedural tasks and :mod:`rtcore.data.user` for image folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write
from ..config import default_cache_dir, resolve_cache_dir
from ..errors import CacheDirError
from .generators import GENERATORS, IMAGE_SIZE, GeneratedData, split_rngs

__all__ = ["ARRAY_KEYS", "array_shapes", "arrays_digest", "cache_meta", "cache_path", "cached_generate",
           "check_labels", "read_arrays", "read_cache", "tasks_cache_dir", "write_arrays", "write_cache"]

log = logging.getLogger(__name__)

#: the arrays of a cached task, in digest order
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
_FORMAT = "rtcore-task-arrays-1"


def tasks_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder for task-array caches: ``<cache_dir>/tasks``, by default under ``$RTCORE_CACHE_DIR``
    or ``~/.cache/rtcore``. An empty ``cache_dir`` is refused (it would mean the current folder)."""
    if cache_dir is None:
        return default_cache_dir() / "tasks"
    if not str(cache_dir).strip():
        raise CacheDirError(f"cache_dir={str(cache_dir)!r} is empty; pass a folder path (--cache-dir), "
                            "or use_cache=False (--no-cache) to keep no task cache")
    return resolve_cache_dir(cache_dir) / "tasks"


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over each array's name, dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    for k in ARRAY_KEYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                 info: dict[str, Any] | None = None) -> None:
    """Write the four task arrays to ``path`` atomically (safetensors), with ``meta`` (what they depend
    on), ``info`` (facts about them for the reader, e.g. how many images were resized) and their sha256."""
    from safetensors.numpy import save

    tensors = {k: np.ascontiguousarray(arrays[k]) for k in ARRAY_KEYS}
    header = {"format": _FORMAT, "meta": json.dumps(meta, sort_keys=True), "digest": arrays_digest(tensors),
              "info": json.dumps(info or {}, sort_keys=True)}
    atomic_write(path, save(tensors, metadata=header))


def array_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of a cache file's arrays, from its header alone (nothing is loaded), so a
    reader can compare their size with the memory budget first. ValueError for an unreadable header."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            return {k: (tuple(fh.get_slice(k).get_shape()), str(fh.get_slice(k).get_dtype())) for k in fh.keys()}
    except OSError:
        raise
    except Exception as exc:  # SafetensorError (not a ValueError): truncated file, bad header
        raise ValueError(f"unreadable cache file: {exc}") from exc


def read_arrays(path: Path, meta: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The four arrays of a cache file and its ``info``, after checking its format, ``meta``, shapes and digest.

    Raises ValueError (or OSError) on any mismatch; the caller rebuilds the file. Value checks
    specific to a kind of task (dtype, range) are the caller's.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            header = fh.metadata() or {}
            keys = set(fh.keys())
            if keys != set(ARRAY_KEYS):
                raise ValueError(f"unexpected arrays {sorted(keys)}")
            arrays = {k: fh.get_tensor(k) for k in ARRAY_KEYS}
    except (ValueError, OSError):
        raise
    except Exception as exc:  # SafetensorError (not a ValueError): truncated file, bad header
        raise ValueError(f"unreadable cache file: {exc}") from exc
    if header.get("format") != _FORMAT:
        raise ValueError(f"format {header.get('format')!r} is not {_FORMAT!r}")
    try:
        stored_meta = json.loads(header.get("meta", ""))
        info = json.loads(header.get("info", "{}"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"unreadable metadata: {exc}") from exc
    if not isinstance(info, dict):
        raise ValueError(f"info {info!r} is not a JSON object")
    if stored_meta != json.loads(json.dumps(meta, sort_keys=True)):
        raise ValueError(f"metadata mismatch: {stored_meta} != {meta}")
    if header.get("digest") != arrays_digest(arrays):
        raise ValueError("the arrays' sha256 does not match the stored digest (bytes changed after writing)")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or y.dtype != np.int64 or y.shape != (x.shape[0],):
            raise ValueError(f"x_{split} {x.dtype} {x.shape} and y_{split} {y.dtype} {y.shape} are not (N,C,H,W) "
                             "images with (N,) int64 labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:] or arrays["x_train"].dtype != arrays["x_test"].dtype:
        raise ValueError("train and test images differ in shape or dtype")
    return arrays, info


def check_labels(arrays: dict[str, np.ndarray], k: int) -> None:
    """ValueError unless every label of both splits is in ``0..k-1``."""
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"y_{split} labels outside 0..{k - 1}")


# --------------------------------------------------------------------------- generated tasks


def cache_meta(kind: str, seed: int, n_train: int, n_test: int) -> dict[str, object]:
    """Everything the cached arrays depend on; stored in the file and compared on load."""
    _, classes, version = GENERATORS[kind]
    meta: dict[str, object] = {"kind": kind, "version": version, "seed": int(seed),
                               "n_train": int(n_train), "n_test": int(n_test),
                               "classes": list(classes)}
    if kind == "glyphs":
        import PIL

        meta["pillow"] = PIL.__version__
    return meta


def cache_path(kind: str, seed: int, n_train: int, n_test: int,
               cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the cache file for one generated dataset."""
    meta = cache_meta(kind, seed, n_train, n_test)
    extra = f"-pil{meta['pillow']}" if "pillow" in meta else ""
    return tasks_cache_dir(cache_dir) / f"{kind}-v{meta['version']}-seed{seed}-{n_train}x{n_test}{extra}.safetensors"


def read_cache(path: Path, meta: dict[str, object]) -> GeneratedData:
    """Load and fully validate a generated-task cache file; raise ValueError (or OSError) on any mismatch."""
    arrays, _ = read_arrays(path, meta)
    check_labels(arrays, len(meta["classes"]))  # type: ignore[arg-type]
    for split, n in (("train", meta["n_train"]), ("test", meta["n_test"])):
        x = arrays[f"x_{split}"]
        if x.dtype != np.float32 or x.shape != (n, 1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"x_{split} has dtype {x.dtype} shape {x.shape}")
        if n and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise ValueError(f"x_{split} values outside [0, 1]")
    return GeneratedData(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                         tuple(meta["classes"]))  # type: ignore[arg-type]


def write_cache(path: Path, data: GeneratedData, meta: dict[str, object]) -> None:
    """Write ``data`` to ``path`` atomically, with its metadata and the sha256 of its arrays."""
    write_arrays(path, {k: getattr(data, k) for k in ARRAY_KEYS}, meta)


def cached_generate(kind: str, *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                    cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True) -> GeneratedData:
    """Return generated dataset ``kind`` ("shapes" or "glyphs"), from the disk cache when valid.

    A missing or invalid cache file is (re)generated and written; if the cache folder is not
    writable the data is still returned and a warning logged. ``use_cache=False`` generates
    without reading or writing any file.
    """
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; valid: {sorted(GENERATORS)}")
    fn, _, _ = GENERATORS[kind]
    defaults = fn.__defaults__ or ()
    n_train = int(defaults[0] if n_train is None else n_train)
    n_test = int(defaults[1] if n_test is None else n_test)
    if n_train < 0 or n_test < 0:
        raise ValueError(f"sizes must be >= 0, got n_train={n_train}, n_test={n_test}")
    split_rngs(seed, 0)  # validates seed before touching the disk
    if not use_cache:
        return fn(n_train=n_train, n_test=n_test, seed=seed)
    meta = cache_meta(kind, seed, n_train, n_test)
    path = cache_path(kind, seed, n_train, n_test, cache_dir)
    if path.exists():
        try:
            return read_cache(path, meta)
        except (ValueError, OSError) as exc:
            log.warning("ignoring corrupt task cache %s (%s); regenerating", path, exc)
    data = fn(n_train=n_train, n_test=n_test, seed=seed)
    try:
        write_cache(path, data, meta)
    except OSError as exc:
        log.warning("could not write task cache %s (%s); continuing without cache", path, exc)
    return data
