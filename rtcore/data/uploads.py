"""Uploaded task data (a ``.zip`` of an image folder, or an ``.npz``): checked, unpacked safely, stored by content.

:func:`unpack_task_upload` refuses, before storing anything: an empty or too large upload, a
name that is not ``.zip`` / ``.npz``, and for a zip: entries with absolute paths or ``..``
(zip-slip), symlinks and other special files, encrypted entries, duplicate names, more than
``max_files`` files or more than ``max_unpacked_bytes`` once unpacked (zip bombs: checked on the
declared sizes first, then on the bytes actually written). It then unpacks into a private
temporary folder, loads the task completely (every image decoded, every array checked, see
:mod:`rtcore.data.user`) and only then moves it to ``dest_dir/<sha256 prefix>/``, so a refused
upload leaves nothing behind and the same bytes uploaded twice are stored once.
:func:`prune_task_uploads` deletes uploads not used for a while, like the checkpoint uploads.

A zip holds either ``train/`` and ``test/`` at its root or one top-level folder holding them
(``weather/train/<class>/...``); other files next to ``train/`` and ``test/`` (a README) are not
unpacked, and macOS ``__MACOSX/`` and hidden entries are skipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

from .._io import TMP_PREFIX, UPLOAD_TTL_S, prune_unused, upload_size_problem
from ..budget import MemoryBudget, input_budget
from ..config import resolve_cache_dir
from ..errors import TaskUnavailableError
from .folder import MIXED_SIZES
from .refs import FOLDER_PREFIX, NPZ_PREFIX, TaskDataError
from .user import load_user_task

__all__ = ["UPLOAD_TTL_S", "TaskUploadError", "prune_task_uploads", "store_task_upload", "task_upload_dir",
           "touch_task_upload", "unpack_task_upload"]

log = logging.getLogger(__name__)

#: an upload not used for this long is deleted at the next upload (as for checkpoints)
#: the most files a zip may hold
MAX_FILES = 100_000
_STORED = re.compile(r"^[0-9a-f]{24}$")
_CHUNK = 1 << 20


class TaskUploadError(TaskDataError):
    """An uploaded task was refused (size, type, unsafe archive, or data that does not load)."""


def task_upload_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where accepted task uploads are stored: ``task-uploads/`` in the cache folder."""
    return resolve_cache_dir(cache_dir) / "task-uploads"


def store_task_upload(filename: str, data: bytes, max_bytes: int,
                      cache_dir: str | os.PathLike[str] | None = None) -> str:
    """An upload stored as a task in the cache's :func:`task_upload_dir` (uploads unused for
    :data:`UPLOAD_TTL_S` pruned first; then :func:`unpack_task_upload`, which refuses anything above
    ``max_bytes`` before it stores a byte); its task reference."""
    dest = task_upload_dir(cache_dir)
    prune_task_uploads(dest)
    return unpack_task_upload(filename, data, dest, max_bytes, cache_dir=cache_dir)


def unpack_task_upload(filename: str, data: bytes, dest_dir: str | os.PathLike[str], max_bytes: int, *,
                       max_unpacked_bytes: int | None = None, max_files: int = MAX_FILES,
                       max_input_bytes: int | MemoryBudget | None = None, mixed_sizes: str = "resize",
                       cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Check, unpack and store an uploaded ``.zip`` (image folder) or ``.npz``; return its task reference.

    ``max_bytes``: the largest upload accepted (checked first). ``max_unpacked_bytes``: the most a
    zip may unpack to (default ``4 * max_bytes``). ``max_input_bytes``: the input memory budget the
    task's images are checked against before decoding (:func:`rtcore.budget.input_budget`: default
    ``$RTCORE_MAX_INPUT_GB`` or 4 GB). ``mixed_sizes``: as in
    :func:`rtcore.data.create_task` (the check loads the task with it). ``cache_dir``: when given,
    the decoded images of a folder are kept in its task cache, so the first evaluation does not
    decode them again. The returned ``folder:...`` / ``npz:...`` reference names a path under
    ``dest_dir``; the task's name is the zip's top-level folder (or the file's stem).

    Raises :class:`TaskUploadError` (a ValueError) naming the problem; nothing is left in ``dest_dir``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TaskUploadError(f"the upload {filename!r} must be bytes, got {type(data).__name__}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes!r} must be a positive int")
    if mixed_sizes not in MIXED_SIZES:
        raise ValueError(f"mixed_sizes={mixed_sizes!r} is not one of {list(MIXED_SIZES)}")
    problem = upload_size_problem(filename, data, max_bytes)
    if problem:
        raise TaskUploadError(problem)
    suffix = Path(str(filename)).suffix.lower()
    if suffix not in (".zip", ".npz"):
        raise TaskUploadError(f"{filename!r} is neither a .zip of an image folder (train/<class>/*, test/<class>/*) "
                              "nor an .npz of arrays (x_train, y_train, x_test, y_test)")
    if not str(dest_dir).strip():
        raise ValueError("dest_dir is empty; pass the folder uploads are stored in (e.g. task_upload_dir())")
    unpacked_cap = 4 * max_bytes if max_unpacked_bytes is None else int(max_unpacked_bytes)
    budget = input_budget(max_input_bytes)
    dest = Path(os.path.abspath(Path(dest_dir).expanduser()))
    dest.mkdir(parents=True, exist_ok=True)
    prune_task_uploads(dest)
    final = dest / hashlib.sha256(data).hexdigest()[:24]
    if final.is_dir():
        ref = _stored_ref(final)
        if ref is not None:
            touch_task_upload(final)
            return ref
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=TMP_PREFIX))
    try:
        if suffix == ".zip":
            stem = _unpack_zip(filename, bytes(data), tmp, unpacked_cap, max_files)
            ref_tmp = f"{FOLDER_PREFIX}{tmp / stem}"
        else:
            stem = _sanitise(Path(filename).stem)
            _check_npz_sizes(filename, bytes(data), unpacked_cap)
            (tmp / f"{stem}.npz").write_bytes(data)
            ref_tmp = f"{NPZ_PREFIX}{tmp / stem}.npz"
        try:
            load_user_task(ref_tmp, mixed_sizes=mixed_sizes, cache_dir=cache_dir, max_input_bytes=budget)
        except (TaskDataError, TaskUnavailableError) as exc:
            raise TaskUploadError(f"upload {filename!r} refused: {_inside_names(str(exc), tmp, stem, filename)}"
                                  ) from exc
        try:
            os.rename(tmp, final)
        except OSError:  # the same bytes stored meanwhile by another upload
            pass
        ref = _stored_ref(final)
        if ref is None:
            raise TaskUploadError(f"upload {filename!r}: {final} is in the way; remove it and upload again")
        return ref
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _inside_names(msg: str, tmp: Path, stem: str, filename: str) -> str:
    """A loader's message with the temporary paths replaced by names inside the upload."""
    for prefix in (f"{FOLDER_PREFIX}{tmp / stem}", f"{NPZ_PREFIX}{tmp / stem}.npz"):
        msg = msg.replace(prefix, filename)
    return msg.replace(f"{tmp / stem}/", "").replace(str(tmp / stem), filename).replace(f"{tmp}/", "")


def _stored_ref(folder: Path) -> str | None:
    """The reference of a stored upload folder (its one entry: a task folder or an ``.npz``)."""
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return None
    if len(entries) != 1:
        return None
    p = entries[0]
    if p.is_dir():
        return f"{FOLDER_PREFIX}{p}"
    return f"{NPZ_PREFIX}{p}" if p.suffix == ".npz" else None


def _sanitise(name: str) -> str:
    """A safe single path component for a task's name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60].strip("._") or "task"


def _skipped(parts: tuple[str, ...]) -> bool:
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _entry_parts(filename: str, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The checked path components of a zip entry; TaskUploadError for anything unsafe."""
    name = info.filename
    if "\x00" in name:
        raise TaskUploadError(f"upload {filename!r} refused: entry {name!r} has a NUL character in its name")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise TaskUploadError(f"upload {filename!r} refused: entry {name!r} has an absolute path; a zip of a task "
                              "holds relative paths only (zip it from inside its folder)")
    parts = tuple(p for p in PurePosixPath(norm).parts if p not in ("", "."))
    if ".." in parts:
        raise TaskUploadError(f"upload {filename!r} refused: entry {name!r} points outside the archive ('..' in its "
                              "path)")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no file type recorded (e.g. zips made on Windows)
    if kind == stat.S_IFLNK:
        raise TaskUploadError(f"upload {filename!r} refused: entry {name!r} is a symbolic link; zip the files "
                              "themselves (e.g. zip without --symlinks)")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise TaskUploadError(f"upload {filename!r} refused: entry {name!r} is not a regular file or folder")
    if info.flag_bits & 0x1:
        raise TaskUploadError(f"upload {filename!r} refused: entry {name!r} is encrypted; upload an unencrypted zip")
    return parts


def _unpack_zip(filename: str, data: bytes, tmp: Path, max_unpacked: int, max_files: int) -> str:
    """Check and unpack an image-folder zip into ``tmp/<stem>/``; return ``stem``."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise TaskUploadError(f"upload {filename!r} refused: not a readable zip archive ({exc})") from exc
    with zf:
        entries: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
        seen: set[tuple[str, ...]] = set()
        for info in zf.infolist():
            parts = _entry_parts(filename, info)
            if not parts or _skipped(parts):
                continue
            if parts in seen and not info.is_dir():
                raise TaskUploadError(f"upload {filename!r} refused: entry {info.filename!r} appears twice")
            seen.add(parts)
            entries.append((parts, info))
        files = [(p, i) for p, i in entries if not i.is_dir()]
        if len(files) > max_files:
            raise TaskUploadError(f"upload {filename!r} refused: {len(files)} files, above the limit of {max_files}")
        declared = sum(i.file_size for _, i in files)
        if declared > max_unpacked:
            raise TaskUploadError(f"upload {filename!r} refused: it unpacks to {declared / 1e6:.0f} MB, above the "
                                  f"{max_unpacked / 1e6:.0f} MB limit")
        prefix = _layout_prefix(filename, entries)
        stem = _sanitise(prefix[0] if prefix else Path(filename).stem)
        root = tmp / stem
        root.mkdir()
        written = 0
        for parts, info in entries:
            rel = parts[len(prefix):]
            if len(parts) <= len(prefix) or rel[0] not in ("train", "test"):
                continue  # README and the like next to train/ and test/
            target = root.joinpath(*rel)
            if os.path.commonpath([root, os.path.abspath(target)]) != str(root):
                raise TaskUploadError(f"upload {filename!r} refused: entry {info.filename!r} points outside the "
                                      "archive")
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file and a folder of one name, a name too long
                raise TaskUploadError(f"upload {filename!r} refused: entry {info.filename!r} cannot be unpacked "
                                      f"({exc.strerror or exc})") from exc
            written += _extract(filename, zf, info, target, max_unpacked - written)
    return stem


def _layout_prefix(filename: str, entries: list[tuple[tuple[str, ...], zipfile.ZipInfo]]) -> tuple[str, ...]:
    """``()`` when train/ and test/ are at the zip's root, ``(folder,)`` when inside one top-level folder."""
    tops = {p[0] for p, i in entries if len(p) > 1 or i.is_dir()}
    if {"train", "test"} <= tops:
        return ()
    if len(tops) == 1:
        (top,) = tops
        inner = {p[1] for p, i in entries if len(p) > 2 or (len(p) == 2 and i.is_dir())}
        if {"train", "test"} <= inner:
            return (top,)
    found = ", ".join(sorted(tops)[:8]) or "no folders"
    raise TaskUploadError(f"upload {filename!r} refused: no train/ and test/ folders at the zip's root or in one "
                          f"top-level folder (top-level folders: {found}). Fix: zip a folder laid out as "
                          "<name>/train/<class>/<image> and <name>/test/<class>/<image>")


def _extract(filename: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one entry to a new file, at most ``budget`` bytes; keep its timestamp; return the bytes written."""
    n = 0
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(_CHUNK):
                n += len(chunk)
                if n > budget:
                    raise TaskUploadError(f"upload {filename!r} refused: it unpacks to more than the size limit "
                                          f"(at entry {info.filename!r})")
                out.write(chunk)
    except TaskUploadError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise TaskUploadError(f"upload {filename!r} refused: entry {info.filename!r} cannot be unpacked "
                              f"({type(exc).__name__}: {exc})") from exc
    try:
        ts = time.mktime((*info.date_time, 0, 0, -1))
        os.utime(target, (ts, ts))
    except (OverflowError, ValueError, OSError):
        pass
    return n


def _check_npz_sizes(filename: str, data: bytes, max_unpacked: int) -> None:
    """An uploaded npz is a zip too: refuse one whose arrays unpack beyond ``max_unpacked`` bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            declared = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise TaskUploadError(f"upload {filename!r} refused: not an .npz archive ({exc}); save the arrays with "
                              "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)") from exc
    if declared > max_unpacked:
        raise TaskUploadError(f"upload {filename!r} refused: its arrays take {declared / 1e6:.0f} MB unpacked, above "
                              f"the {max_unpacked / 1e6:.0f} MB limit")


def touch_task_upload(path: str | os.PathLike[str]) -> None:
    """Mark a stored upload (its folder, or a reference into it) as used now, so that pruning keeps it."""
    p = Path(str(path).split(":", 1)[1] if str(path).startswith((FOLDER_PREFIX, NPZ_PREFIX)) else path)
    for cand in (p, *p.parents):
        if _STORED.match(cand.name):
            try:
                os.utime(cand)
            except OSError:
                pass
            return


def prune_task_uploads(dest_dir: str | os.PathLike[str], older_than_s: float = UPLOAD_TTL_S) -> int:
    """Delete the stored uploads (and leftover temporaries) in ``dest_dir`` not used for ``older_than_s``
    seconds; return how many. Only entries named as :func:`unpack_task_upload` names them are touched."""

    def owned(p: Path) -> bool:
        stored = p.is_dir() and not p.is_symlink() and _STORED.match(p.name) is not None
        return stored or p.name.startswith(TMP_PREFIX)

    removed = prune_unused(dest_dir, older_than_s, owned)
    if removed:
        log.info("removed %d unused task upload(s) from %s", removed, dest_dir)
    return removed
