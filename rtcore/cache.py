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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write, remove_stale_temporaries, tensors_digest
from .config import default_cache_dir
from .errors import CacheDirError

log = logging.getLogger(__name__)

# Bump a computation's version when its code changes its results.
# (attacks: 4/4/3/3/2 = each eps attacked on its own; the monotone carry-over is applied in the tables)
CODE_VERSIONS: dict[str, str] = {"features": "1", "probe": "2", "feature_attack": "4", "attack": "4",
                                 "head_attack": "3", "ce_attack": "3", "adapted": "1", "autoattack": "2"}

#: Expected shape of each stored tensor: ints are exact sizes, None is any size, "N", "m", ... must agree.
Schema = Mapping[str, tuple[int | str | None, ...]]


@dataclass(frozen=True)
class Rejected:
    """A cache entry that failed verification and was deleted (it is recomputed)."""

    path: str
    reason: str


def check_cache_dir(root: str | os.PathLike[str]) -> Path:
    """The cache folder, created if needed; :class:`CacheDirError` if it is a file or not writable."""
    p = Path(root).expanduser()
    if p.exists() and not p.is_dir():
        raise CacheDirError(f"cache dir {str(p)!r} is a file, not a folder; pass a folder path "
                            f"(--cache-dir / cache_dir=), e.g. ~/.cache/rtcore")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheDirError(f"cache dir {str(p)!r} cannot be created ({e}); pass a writable folder") from e
    if not os.access(p, os.W_OK | os.X_OK):
        raise CacheDirError(f"cache dir {str(p)!r} is not writable; pass a writable folder (--cache-dir)")
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
    """Tensors by key under ``root/results``. ``enabled=False`` makes every lookup a miss."""

    def __init__(self, root: str | os.PathLike[str] | None = None, enabled: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.enabled = enabled
        self.rejected: list[Rejected] = []
        self._lock = threading.Lock()
        if enabled:
            check_cache_dir(self.root)
            _clean_once(self.root / "results")

    @staticmethod
    def key(kind: str, **parts: Any) -> str:
        if kind not in CODE_VERSIONS:
            raise ValueError(f"unknown cache kind {kind!r}; known: {sorted(CODE_VERSIONS)}")
        desc = json.dumps({"kind": kind, "version": CODE_VERSIONS[kind], **parts}, sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(desc.encode()).hexdigest()}"

    def path(self, key: str) -> Path:
        return self.root / "results" / key.split("-", 1)[0] / f"{key}.safetensors"

    def _reject(self, p: Path, reason: str) -> None:
        log.warning("cache entry %s failed verification (%s); it is deleted and recomputed", p, reason)
        with self._lock:
            self.rejected.append(Rejected(str(p), reason))
        p.unlink(missing_ok=True)

    def load(self, key: str, schema: Schema | None = None) -> dict[str, torch.Tensor] | None:
        """The verified tensors, or None when absent or bad (a bad entry is deleted and reported)."""
        if not self.enabled:
            return None
        p = self.path(key)
        if not p.is_file():
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
        """Write atomically with the key and the payload digest in the metadata."""
        if not self.enabled:
            return
        from safetensors.torch import save_file

        payload = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"key": key, "sha256": tensors_digest(payload)}
        atomic_write(self.path(key), lambda tmp: save_file(payload, tmp, metadata=meta))
