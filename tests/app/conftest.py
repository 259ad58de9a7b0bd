"""Shared set-up of the dashboard tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import state
from rtcore.runs import selection

BACKBONE = "fmnist-cnn-standard"


def use_small_defaults(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """Small dashboard defaults through the environment overrides (n = 20, task shapes, 'fast',
    linf, the standard CNN when bundled) and the private result cache ``cache_dir``."""
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv(selection.ENV_N, "20")
    monkeypatch.setenv(selection.ENV_TASKS, "shapes")
    monkeypatch.setenv(selection.ENV_ATTACK, "fast")
    monkeypatch.setenv(selection.ENV_NORM, "linf")
    if BACKBONE in state.backbone_choices():
        monkeypatch.setenv(selection.ENV_BACKBONE, BACKBONE)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private result cache per test file: its first evaluation warms it for the rest of the file."""
    return tmp_path_factory.mktemp("dashboard-cache")


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """The small defaults of :func:`use_small_defaults` on the file's cache."""
    use_small_defaults(monkeypatch, cache_dir)


def zipped_task(name: str = "weather") -> bytes:
    """A zip with one top-level folder: train/<class>/*.png and test/<class>/*.png (2 classes)."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for split, count in (("train", 30), ("test", 12)):
            for label, cls in enumerate(("sun", "rain")):
                for i in range(count):
                    img = rng.uniform(0, 0.3, (16, 16)) + (0.6 * (np.arange(16) % 3 == 0) if label else 0.0)
                    png = io.BytesIO()
                    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(png, format="PNG")
                    zf.writestr(f"{name}/{split}/{cls}/{i}.png", png.getvalue())
    return buf.getvalue()


def image_folder(root: Path, name: str = "weather") -> Path:
    """The task of :func:`zipped_task` unpacked under ``root``: ``root/<name>/{train,test}/<class>/*.png``."""
    with zipfile.ZipFile(io.BytesIO(zipped_task(name))) as zf:
        zf.extractall(root)
    return root / name
