"""Content-addressed, atomic on-disk results (safetensors only, never pickle).

A key is the sha256 of a JSON description of everything that changes a result: the
backbone fingerprint, the input digest, eps, norm, attack settings, seed and the code
version of the computation. Entries are written to a temporary file and renamed, so a
crash never leaves a half-written entry; an unreadable entry is deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Bump a computation's version when its code changes its results.
CODE_VERSIONS: dict[str, str] = {"features": "1", "probe": "1", "feature_attack": "1", "attack": "1"}


def default_cache_dir() -> Path:
    """``$RTCORE_CACHE_DIR`` or ``~/.cache/rtcore``."""
    env = os.environ.get("RTCORE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "rtcore"


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over dtype, shape and bytes of tensors (the identity of an input set)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ResultCache:
    """Tensors by key under ``root/results``. ``enabled=False`` makes every lookup a miss."""

    def __init__(self, root: str | os.PathLike[str] | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    @staticmethod
    def key(kind: str, **parts: Any) -> str:
        if kind not in CODE_VERSIONS:
            raise ValueError(f"unknown cache kind {kind!r}; known: {sorted(CODE_VERSIONS)}")
        desc = json.dumps({"kind": kind, "version": CODE_VERSIONS[kind], **parts}, sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(desc.encode()).hexdigest()}"

    def path(self, key: str) -> Path:
        return self.root / "results" / key.split("-", 1)[0] / f"{key}.safetensors"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """The stored tensors, or None when absent or corrupt (a corrupt entry is deleted)."""
        if not self.enabled:
            return None
        p = self.path(key)
        if not p.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as fh:
                if (fh.metadata() or {}).get("key") != key:
                    raise ValueError("the stored key does not match the file name")
                return {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed, never trusted
            log.warning("cache entry %s is unreadable (%s); recomputing it", p, e)
            p.unlink(missing_ok=True)
            return None

    def save(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Write atomically: temporary file in the same folder, then rename."""
        if not self.enabled:
            return
        from safetensors.torch import save_file

        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata={"key": key})
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
