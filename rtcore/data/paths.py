"""Data folders: the normalised ``root`` argument and where downloads go."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import default_cache_dir

#: environment variable naming the download folder of online tasks
ENV_DATA_DIR = "RTCORE_DATA_DIR"


def norm_root(root: str | os.PathLike[str] | None) -> str | None:
    """Absolute, user-expanded form of ``root`` (memo key and search path)."""
    return None if root is None else str(Path(root).expanduser().resolve())


def default_data_dir(cache_root: str | os.PathLike[str] | None = None) -> Path:
    """Where online tasks download to when no ``root`` is given: ``$RTCORE_DATA_DIR``, else
    ``<cache_root>/data`` (``cache_root``: the cache folder, by default ``$RTCORE_CACHE_DIR`` or
    ``~/.cache/rtcore``), so a run with a cache folder writes nothing outside it."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    return (Path(cache_root).expanduser() if cache_root is not None else default_cache_dir()) / "data"


def data_dirs(root: str | None, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders to look for downloaded data in, the download target first.

    ``root`` alone when given; else ``data_dir`` (default :func:`default_data_dir`), then the
    former default ``~/.cache/rtcore/data`` (read only: earlier downloads stay usable).
    """
    if root is not None:
        return [Path(root).expanduser()]
    first = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    legacy = Path.home() / ".cache" / "rtcore" / "data"
    if os.environ.get(ENV_DATA_DIR) or legacy == first:
        return [first]
    return [first, legacy]
