"""The dashboard's longer prose (notes, the lesson's steps, the theory page's examples) lives in TOML files under
``assets/text/``, where it reads and edits as text; each file is read once per process."""

from __future__ import annotations

import functools
import tomllib
from typing import Any

from rtcore.config import ASSETS_DIR

TEXT_DIR = ASSETS_DIR / "text"


@functools.cache
def texts(name: str = "dashboard") -> dict[str, Any]:
    """The tables of ``assets/text/<name>.toml``."""
    return tomllib.loads((TEXT_DIR / f"{name}.toml").read_text(encoding="utf-8"))


def text(key: str, **values: object) -> str:
    """The passage ``key`` of ``assets/text/dashboard.toml``, its ``{names}`` filled from ``values``."""
    passage = str(texts()[key])
    return passage.format(**values) if values else passage
