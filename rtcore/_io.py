"""File helpers shared by every writer: one atomic write, digests of files and tensors.

Every artefact rtcore writes (cache entries, checkpoints, CSVs, model cards) goes through
:func:`atomic_write`: a temporary file in the destination folder, flushed and fsynced,
made world-readable (0644) and renamed over the target, so a crash leaves either the old
file or the new one, never a half-written one. Temporaries left by a killed process are
named ``.tmp-*`` and removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

TMP_PREFIX = ".tmp-"
#: an upload (a task or a checkpoint) not used for this long is deleted at the next save
UPLOAD_TTL_S = 24 * 3600.0
FILE_MODE = 0o644
STALE_AFTER_S = 3600.0


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[str], None], *, mode: int = FILE_MODE) -> Path:
    """Write ``data`` (bytes, or a function that writes a given temporary path) to ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX, suffix=target.suffix)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def remove_stale_temporaries(folder: str | os.PathLike[str], older_than_s: float = STALE_AFTER_S) -> int:
    """Delete ``.tmp-*`` files under ``folder`` not modified for ``older_than_s`` seconds; return how many.

    A temporary that young may belong to a writer still running, so it is kept.
    """
    root = Path(folder)
    if not root.is_dir():
        return 0
    now, removed = time.time(), 0
    for p in root.rglob(f"{TMP_PREFIX}*"):
        try:
            if p.is_file() and now - p.stat().st_mtime > older_than_s:
                p.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def upload_size_problem(filename: str, data: bytes, max_bytes: int) -> str | None:
    """Why an upload of ``data`` cannot be taken for its size (empty, or above ``max_bytes``), else None."""
    size = len(data)
    if size == 0:
        return f"the uploaded file {filename!r} is empty"
    if size > max_bytes:
        return f"the uploaded file {filename!r} is {size / 1e6:.1f} MB, above the {max_bytes / 1e6:.0f} MB limit"
    return None


def prune_unused(folder: str | os.PathLike[str], older_than_s: float, owned: Callable[[Path], bool]) -> int:
    """Delete the entries directly in ``folder`` that ``owned`` accepts and that nobody modified or touched for
    ``older_than_s`` seconds (a folder with its contents; a link itself, never what it points to); return how
    many. Entries that vanish or cannot be removed meanwhile are skipped."""
    root = Path(folder)
    if not str(folder).strip() or not root.is_dir():
        return 0
    now, removed = time.time(), 0
    for p in root.iterdir():
        try:
            if now - p.lstat().st_mtime <= older_than_s or not owned(p):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a regular file, in words ("is a directory", "is a named pipe (FIFO)", "is a
    character device (a symbolic link to '/dev/zero')", "does not exist", ...), or None when it is one.

    Only ``stat`` is used, never ``open``: opening a FIFO for reading blocks until a writer comes, and a
    device such as ``/dev/zero`` reads forever."""
    p = Path(path)
    link = f" (a symbolic link to {os.path.realpath(p)!r})" if os.path.islink(p) else ""
    try:
        mode = os.stat(p).st_mode  # follows symbolic links
    except FileNotFoundError:
        return f"is a symbolic link to {os.path.realpath(p)!r}, which does not exist" if link else "does not exist"
    except NotADirectoryError:
        return "does not exist (a folder on its path is a file)"
    except PermissionError:
        return "cannot be reached (permission denied on a folder on its path)"
    except OSError as e:
        return f"cannot be inspected ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    what = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"is {what}{link}, not a regular file"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over dtype, shape and bytes of tensors (the identity of an input set)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over a named set of tensors (names sorted): the payload digest of a cache entry."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + b"\0")
        h.update(tensor_digest(tensors[name]).encode())
    return h.hexdigest()
