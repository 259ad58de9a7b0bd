"""``folder:PATH`` and ``npz:PATH`` task references and the error type of user task data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputTooLargeError, RtcoreError, TaskUnavailableError

__all__ = ["FOLDER_PREFIX", "NPZ_PREFIX", "TaskDataError", "TaskTooLargeError", "UserRef", "is_user_ref",
           "missing_error", "parse_user_ref", "user_ref_of_path"]

FOLDER_PREFIX = "folder:"
NPZ_PREFIX = "npz:"


class TaskDataError(RtcoreError, ValueError):
    """A ``folder:`` or ``npz:`` task is malformed; the message names the file or value and the fix."""


class TaskTooLargeError(TaskDataError, InputTooLargeError):
    """A task's images would take more memory than the input memory budget (found before decoding)."""


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class UserRef:
    """A parsed ``folder:`` / ``npz:`` reference: ``kind`` and the absolute ``path``."""

    kind: str  # "folder" | "npz"
    path: Path

    @property
    def ref(self) -> str:
        """The canonical reference string (absolute path)."""
        return f"{self.kind}:{self.path}"

    @property
    def default_name(self) -> str:
        """The task's name in tables: the folder's base name, or the ``.npz`` file's stem."""
        return (self.path.name if self.kind == "folder" else self.path.stem) or self.ref


def is_user_ref(ref: object) -> bool:
    """Whether ``ref`` is written as a ``folder:PATH`` or ``npz:PATH`` reference (the path is not checked)."""
    return isinstance(ref, str) and ref.startswith((FOLDER_PREFIX, NPZ_PREFIX))


def user_ref_of_path(path: str) -> str:
    """The task reference of a typed path: as it is when it names its kind (``folder:`` / ``npz:``), ``npz:`` for a
    ``.npz`` file, else ``folder:``."""
    path = path.strip()
    if not path:
        raise ValueError("no path given: type the path of a folder (train/<class>/, test/<class>/) or of an .npz file")
    if is_user_ref(path):
        return path
    return f"{NPZ_PREFIX if path.lower().endswith('.npz') else FOLDER_PREFIX}{path}"


def parse_user_ref(ref: str) -> UserRef:
    """``folder:PATH`` / ``npz:PATH`` -> :class:`UserRef` with ``~`` expanded and the path made absolute."""
    if not is_user_ref(ref):
        raise ValueError(f"{ref!r} is not a task reference; write folder:PATH or npz:PATH")
    kind, _, raw = ref.partition(":")
    if not raw.strip():
        raise ValueError(f"{ref!r} names no path; write {kind}:PATH, e.g. {kind}:~/data/"
                         f"{'weather' if kind == 'folder' else 'weather.npz'}")
    return UserRef(kind, Path(os.path.abspath(Path(raw).expanduser())))


def missing_error(uref: UserRef) -> TaskUnavailableError:
    what = "folder" if uref.kind == "folder" else "file"
    return TaskUnavailableError(
        f"{uref.ref}: no such {what}. Fix: check the path (a relative path is taken from the current "
        f"folder, {os.getcwd()})")
