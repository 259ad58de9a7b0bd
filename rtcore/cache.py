"""Content-addressed, verified, atomic on-disk results (safetensors only, never pickle).

A key is the sha256 of a JSON description of everything that changes a result: the
backbone fingerprint, the input digest, eps, norm, attack settings, seed and the code
version of the computation. Each entry stores, in its safetensors metadata, its key and a
sha256 of its payload (names, dtypes, shapes and bytes of every tensor).

A hit is used only after it is verified: the key matches, the payload digest matches, the
expected tensors are present with the expected shapes, and every float is finite. An entry
that fails any check is deleted, recomputed by the caller and counted in
:attr:`ResultCache.rejected`. Writes go through :func:`rtcore._io.atomic_write` (fsync, 0644,
rename); temporaries left by a killed writer are removed when a cache is opened.

Damage to the folder never surfaces as a raw ``OSError`` from :meth:`ResultCache.load` or
:meth:`ResultCache.save`: what makes the cache unusable is found when it is opened, before any
work (:class:`CacheDirError` naming the path and the fix: the cache dir or its ``results`` or a
``results/<kind>`` folder being a file, an empty path, a folder that cannot be read); something
at an entry's path that is not a file (a directory) is a bad entry (removed when it can be,
recomputed either way); a folder that cannot be written is detected at opening too: a cache whose
``results`` folder cannot be written is opened read-only (hits are read, saves are skipped with
one warning, :attr:`ResultCache.read_only` is True), a ``results/<kind>`` folder that cannot be
written skips the saves of that kind only (:meth:`ResultCache.writable`). A save that fails
anyway (disk full, a race) is logged once and listed in :attr:`ResultCache.skipped_saves`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write, remove_stale_temporaries, tensors_digest
from .config import resolve_cache_dir
from .errors import CacheDirError

log = logging.getLogger(__name__)

# Bump a computation's version when its code changes its results.
# (attacks: 4/4/3/3/2 = each eps attacked on its own; the monotone carry-over is applied in the tables)
CODE_VERSIONS: dict[str, str] = {"features": "1", "probe": "2", "feature_attack": "4", "attack": "4",
                                 "head_attack": "4", "ce_attack": "3", "adapted": "1", "autoattack": "2"}

#: Expected shape of each stored tensor: ints are exact sizes, None is any size, "N", "m", ... must agree.
Schema = Mapping[str, tuple[int | str | None, ...]]


@dataclass(frozen=True)
class Rejected:
    """A cache entry that failed verification and was deleted (it is recomputed)."""

    path: str
    reason: str


def _is_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _file_in_the_way(p: Path, what: str) -> CacheDirError:
    return CacheDirError(f"{what} {str(p)!r} is a file, not a folder; remove or rename it (it is not a cache entry) "
                         f"or pass another cache dir (--cache-dir / cache_dir=)")


def check_cache_dir(root: str | os.PathLike[str] | None, *, create: bool = True) -> Path:
    """The cache folder (created when ``create``); :class:`CacheDirError` naming the path and the fix if it is
    empty, a file, cannot be created, or it or its ``results`` folder (or a ``results/<kind>`` folder)
    is a file or cannot be read. Writability is not required here (see :class:`ResultCache`)."""
    p = resolve_cache_dir(root)
    if p.exists() and not p.is_dir():
        raise _file_in_the_way(p, "cache dir")
    if not p.exists():
        if not create:
            raise CacheDirError(f"cache dir {str(p)!r} does not exist; pass an existing cache folder")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheDirError(f"cache dir {str(p)!r} cannot be created ({e.strerror or e}); pass a writable "
                                f"folder (--cache-dir / cache_dir=)") from e
    results = p / "results"
    for folder, what in [(p, "cache dir"), (results, "results folder")]:
        if folder.exists() and not folder.is_dir():
            raise _file_in_the_way(folder, what)
        if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
            raise CacheDirError(f"{what} {str(folder)!r} cannot be read (permission denied); fix its permissions "
                                f"(chmod u+rx) or pass another cache dir")
    if results.is_dir():
        for kind in sorted(CODE_VERSIONS):
            folder = results / kind
            if folder.exists() and not folder.is_dir():
                raise _file_in_the_way(folder, f"the {kind!r} folder")
    return p


def _match_schema(tensors: Mapping[str, torch.Tensor], schema: Schema) -> str | None:
    missing = sorted(set(schema) - set(tensors))
    if missing:
        return f"missing tensors {missing}"
    sizes: dict[str, int] = {}
    for name, dims in schema.items():
        t = tensors[name]
        if t.ndim != len(dims):
            return f"tensor {name!r} has shape {tuple(t.shape)}, expected {len(dims)} dimensions"
        for got, want in zip(t.shape, dims):
            if want is None:
                continue
            if isinstance(want, str):
                if sizes.setdefault(want, got) != got:
                    return f"tensor {name!r} has shape {tuple(t.shape)}; size {want} disagrees with {sizes[want]}"
            elif got != want:
                return f"tensor {name!r} has shape {tuple(t.shape)}, expected {dims}"
    return None


_CLEANED: set[Path] = set()
_CLEANED_LOCK = threading.Lock()


def _clean_once(folder: Path) -> None:
    """Remove stale temporaries of a results folder, once per process."""
    with _CLEANED_LOCK:
        if folder in _CLEANED:
            return
        _CLEANED.add(folder)
    remove_stale_temporaries(folder)


class ResultCache:
    """Tensors by key under ``root/results``. ``enabled=False`` makes every lookup a miss and writes nothing.

    ``read_only``: ``None`` (default) opens read-only, with one warning, when the ``results`` folder (or the
    cache dir, before ``results`` exists) cannot be written; ``True`` never writes; ``False`` requires a
    writable cache (:class:`CacheDirError` otherwise). ``root`` is checked when the cache is opened
    (:func:`check_cache_dir`), so an unusable folder is refused before any work.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, enabled: bool = True, *,
                 read_only: bool | None = None) -> None:
        if read_only not in (None, True, False):
            raise ValueError(f"read_only={read_only!r} must be None (decide from the folder's permissions), True "
                             f"or False")
        self.root = resolve_cache_dir(root)
        self.enabled = enabled
        self.rejected: list[Rejected] = []
        #: saves that were skipped (read-only folder) or failed (disk full, a race), one line each
        self.skipped_saves: list[str] = []
        #: True when nothing is written: opened with read_only=True, or its results folder is not writable
        self.read_only = bool(read_only)
        self._unwritable: set[str] = set()  # kinds whose folder cannot be written
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        if enabled:
            self._open(read_only)

    def _open(self, read_only: bool | None) -> None:
        check_cache_dir(self.root, create=read_only is not True)
        results = self.root / "results"
        top = results if results.is_dir() else self.root
        blocked = [] if _is_writable(top) else [top]
        kinds = sorted(k for k in CODE_VERSIONS if (results / k).is_dir() and not _is_writable(results / k))
        if read_only is False and (blocked or kinds):
            where = blocked[0] if blocked else results / kinds[0]
            raise CacheDirError(f"cache folder {str(where)!r} is not writable; fix its permissions (chmod u+w) or "
                                f"pass a writable cache dir (--cache-dir)")
        if read_only is None and blocked:
            self.read_only = True
            log.warning("cache folder %s is not writable: the cache is read (hits are used) but new results are not "
                        "saved; pass a writable --cache-dir to keep them", top)
        elif read_only is None and kinds:
            self._unwritable.update(kinds)
            log.warning("cache folders %s are not writable: their results are read but new ones are not saved",
                        ", ".join(str(results / k) for k in kinds))
        if not self.read_only:
            _clean_once(results)

    def writable(self, kind: str) -> bool:
        """Whether results of ``kind`` are saved (False when disabled, read-only, or its folder is not writable)."""
        return self.enabled and not self.read_only and kind not in self._unwritable

    @staticmethod
    def key(kind: str, **parts: Any) -> str:
        if kind not in CODE_VERSIONS:
            raise ValueError(f"unknown cache kind {kind!r}; known: {sorted(CODE_VERSIONS)}")
        desc = json.dumps({"kind": kind, "version": CODE_VERSIONS[kind], **parts}, sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(desc.encode()).hexdigest()}"

    def path(self, key: str) -> Path:
        return self.root / "results" / key.split("-", 1)[0] / f"{key}.safetensors"

    def _warn_once(self, topic: str, message: str, *args: object) -> None:
        with self._lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        log.warning(message, *args)

    def _reject(self, p: Path, reason: str) -> None:
        """Record a bad entry and remove it (a file, a link, or an empty directory); warn if it cannot be removed."""
        with self._lock:
            self.rejected.append(Rejected(str(p), reason))
        try:
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink(missing_ok=True)
            log.warning("cache entry %s failed verification (%s); it is deleted and recomputed", p, reason)
        except OSError as e:
            log.warning("cache entry %s failed verification (%s) and cannot be deleted (%s); it is recomputed, and "
                        "not saved while it is in the way", p, reason, e.strerror or e)

    def load(self, key: str, schema: Schema | None = None) -> dict[str, torch.Tensor] | None:
        """The verified tensors, or None when absent or bad (a bad entry is deleted and reported)."""
        if not self.enabled:
            return None
        p = self.path(key)
        try:
            mode = os.stat(p).st_mode  # stat, not open: a FIFO at the path must not block
        except FileNotFoundError:
            return None
        except OSError as e:  # a folder on the path that cannot be searched, or a file in the way
            self._warn_once(f"stat:{p.parent}", "cache entries under %s cannot be looked up (%s); they are "
                            "recomputed", p.parent, e.strerror or e)
            return None
        if not stat.S_ISREG(mode):
            self._reject(p, "not a file (a directory or another kind of file is at the entry's path)")
            return None
        if not os.access(p, os.R_OK):
            self._reject(p, "unreadable: permission denied")
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed, never trusted
            self._reject(p, f"unreadable: {type(e).__name__}: {e}")
            return None
        if meta.get("key") != key:
            self._reject(p, "the stored key does not match the file name")
            return None
        if meta.get("sha256") != tensors_digest(tensors):
            self._reject(p, "the payload digest does not match (bytes changed after writing)")
            return None
        problem = _match_schema(tensors, schema) if schema is not None else None
        if problem is None:
            bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
            problem = f"non-finite values in {bad}" if bad else None
        if problem is not None:
            self._reject(p, problem)
            return None
        return tensors

    def save(self, key: str, tensors: Mapping[str, torch.Tensor]) -> None:
        """Write atomically with the key and the payload digest in the metadata; skipped (logged once, listed in
        :attr:`skipped_saves`) when the cache or the kind's folder is not writable or the write fails."""
        if not self.enabled:
            return
        kind = key.split("-", 1)[0]
        p = self.path(key)
        if not self.writable(kind):
            with self._lock:
                self.skipped_saves.append(f"{p}: not saved (read-only cache folder)")
            self._warn_once(f"ro:{kind}", "results of kind %r are not saved: the cache folder is read-only", kind)
            return
        from safetensors.torch import save_file

        payload = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"key": key, "sha256": tensors_digest(payload)}
        try:
            atomic_write(p, lambda tmp: save_file(payload, tmp, metadata=meta))
        except OSError as e:
            with self._lock:
                self.skipped_saves.append(f"{p}: not saved ({type(e).__name__}: {e.strerror or e})")
                if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    self._unwritable.add(kind)
            self._warn_once(f"fail:{kind}:{e.errno}", "cache entry %s could not be saved (%s); the result is used "
                            "but will be recomputed next time", p, e.strerror or e)
