"""Data folders: the normalised ``root`` argument and where downloads and generated data go."""

from __future__ import annotations

import os
from pathlib import Path


def norm_root(root: str | os.PathLike[str] | None) -> str | None:
    """Absolute, user-expanded form of ``root`` (memo key and search path)."""
    return None if root is None else str(Path(root).expanduser().resolve())
