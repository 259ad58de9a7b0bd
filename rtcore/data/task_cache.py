"""The disk cache of generated task data (:mod:`rtcore.data.generators`).

Generated arrays are cached as ``.npz`` files under ``<cache dir>/tasks/`` (the result cache
folder: ``cache_dir=``/``--cache-dir``, else ``$RTCORE_CACHE_DIR`` or ``~/.cache/rtcore``),
written atomically with the sha256 of the arrays and read back with ``allow_pickle=False``.
A cache file that fails any check (unreadable zip, CRC error, wrong keys, shapes, dtypes,
value range, metadata or digest) is regenerated and overwritten, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ..config import default_cache_dir
from .generators import GENERATORS, IMAGE_SIZE, GeneratedData, split_rngs

__all__ = ["arrays_digest", "cache_meta", "cache_path", "cached_generate", "read_cache", "tasks_cache_dir",
           "write_cache"]

log = logging.getLogger(__name__)

_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


def tasks_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder for generated-task caches: ``<cache_dir>/tasks``, by default under ``$RTCORE_CACHE_DIR``
    or ``~/.cache/rtcore``."""
    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "tasks"


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over each array's name, dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    for k in _ARRAY_KEYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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
    return tasks_cache_dir(cache_dir) / f"{kind}-v{meta['version']}-seed{seed}-{n_train}x{n_test}{extra}.npz"


def read_cache(path: Path, meta: dict[str, object]) -> GeneratedData:
    """Load and fully validate a cache file; raise ValueError (or OSError) on any mismatch."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if keys != set(_ARRAY_KEYS) | {"meta", "digest"}:
                raise ValueError(f"unexpected keys {sorted(keys)}")
            stored_meta = json.loads(str(npz["meta"][()]))
            stored_digest = str(npz["digest"][()])
            arrays = {k: npz[k] for k in _ARRAY_KEYS}
    except (zipfile.BadZipFile, EOFError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable cache file: {exc}") from exc
    if stored_meta != meta:
        raise ValueError(f"metadata mismatch: {stored_meta} != {meta}")
    if stored_digest != arrays_digest(arrays):
        raise ValueError("the arrays' sha256 does not match the stored digest (bytes changed after writing)")
    k = len(meta["classes"])  # type: ignore[arg-type]
    for split, n in (("train", meta["n_train"]), ("test", meta["n_test"])):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.float32 or x.shape != (n, 1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"x_{split} has dtype {x.dtype} shape {x.shape}")
        if y.dtype != np.int64 or y.shape != (n,):
            raise ValueError(f"y_{split} has dtype {y.dtype} shape {y.shape}")
        if n and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise ValueError(f"x_{split} values outside [0, 1]")
        if n and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"y_{split} labels outside 0..{k - 1}")
    return GeneratedData(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                         tuple(meta["classes"]))  # type: ignore[arg-type]


def write_cache(path: Path, data: GeneratedData, meta: dict[str, object]) -> None:
    """Write ``data`` to ``path`` atomically, with its metadata and the sha256 of its arrays."""
    arrays = {k: getattr(data, k) for k in _ARRAY_KEYS}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta, sort_keys=True)), digest=np.array(arrays_digest(arrays)), **arrays)
    atomic_write(path, buf.getvalue())


def cached_generate(kind: str, *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                    cache_dir: str | os.PathLike[str] | None = None) -> GeneratedData:
    """Return generated dataset ``kind`` ("shapes" or "glyphs"), from the disk cache when valid.

    A missing or invalid cache file is (re)generated and written; if the cache
    folder is not writable the data is still returned and a warning logged.
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


