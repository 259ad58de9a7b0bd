"""Spec files and digests: reading a ``.toml`` / ``.json`` table with clear errors, writing TOML, and the
content digests of the files a spec names (weights, user data).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from ..data.folder import scan_folder
from ..data.refs import is_user_ref, parse_user_ref


def read_spec_file(path: Path) -> dict[str, Any]:
    """The table of a ``.toml`` / ``.json`` spec file, with clear errors for a missing or malformed file."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"spec file {str(path)!r} {what}; give a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"spec file {str(path)!r} cannot be read: {e}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ValueError(f"spec file {str(path)!r} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"spec file {str(path)!r} must hold a table of keys, got {type(data).__name__}")
    return data


def toml_value(v: Any) -> str:
    """One TOML value: a boolean, number, string, list or inline table of them."""
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, int) else repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def _toml_key(key: object) -> str:
    return str(key) if re.fullmatch(r"[A-Za-z0-9_-]+", str(key)) else json.dumps(str(key))


def toml_text(table: Mapping[str, Any]) -> str:
    """``table`` as TOML: its plain keys, then each nested table (``[attack]``, ``[finetune]``) under its header."""
    lines = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    for k, v in table.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{_toml_key(k)}]", *(f"{_toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items())]
    return "\n".join(lines) + "\n"


_FILE_DIGESTS: dict[str, str] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative paths and bytes, sorted); memoised per
    listing of (path, size, modification time), so a changed file is read again."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{str(p)!r} does not exist")
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    try:
        listing = [(str(q), q.stat().st_size, q.stat().st_mtime_ns) for q in files]
    except OSError as e:
        raise ValueError(f"{str(p)!r} cannot be read: {e}") from None
    memo = hashlib.sha256(repr((str(p.resolve()), listing)).encode()).hexdigest()
    hit = _FILE_DIGESTS.get(memo)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    for q in files:
        if p.is_dir():
            h.update(str(q.relative_to(p)).encode() + b"\0")
        with open(q, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    _FILE_DIGESTS[memo] = h.hexdigest()
    return _FILE_DIGESTS[memo]


def task_identity(ref: str) -> str:
    """A task's identity in a digest: its name, or ``prefix:<content digest>`` for user data. A folder is
    digested over exactly the files its reader reads (:func:`rtcore.data.folder.scan_folder`: symlinked
    class folders followed, hidden files skipped), by their content (:meth:`FolderListing.digest`)."""
    if not is_user_ref(ref):
        return ref
    uref = parse_user_ref(ref)
    if uref.kind != "folder":
        return f"{uref.kind}:{file_digest(uref.path)}"
    return f"folder:{scan_folder(uref.path).digest()}"


def interpreter() -> str:
    """The interpreter running this process (for reproducing commands that must find rtcore)."""
    return sys.executable or "python3"
