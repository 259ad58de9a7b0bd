"""Builders of small user tasks on disk: image folders (mixed modes and formats) and the same images as an npz."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtcore.data import registry

CLASSES = ("cloudy", "rain", "sun")  # already sorted: labels 0, 1, 2


@pytest.fixture(autouse=True)
def _fresh_task_memo():
    """Every test starts and ends with no memoised task."""
    registry._MEMO.clear()
    yield
    registry._MEMO.clear()


def _image(mode: str, rng: np.random.Generator, h: int = 6, w: int = 5) -> Image.Image:
    if mode in ("RGB", "JPEG"):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255).convert("1")
    if mode == "P":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert("P")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    raise ValueError(mode)


def write_image(path: Path, mode: str, rng: np.random.Generator, h: int = 6, w: int = 5) -> Path:
    """Write one image of ``mode`` (``JPEG`` means an RGB JPEG file) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = _image(mode, rng, h, w)
    if mode == "JPEG":
        im.save(path, format="JPEG", quality=90)
    else:
        im.save(path, format="PNG")
    return path


MIXED_MODES = ("RGB", "L", "RGBA", "P", "1", "JPEG")


def build_folder(root: Path, modes: tuple[str, ...] = MIXED_MODES, seed: int = 0, classes=CLASSES,
                 h: int = 6, w: int = 5) -> Path:
    """``root/{train,test}/<class>/<i>-<mode>.{png,jpg}``: one image per mode per class and split."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in classes:
            for i, mode in enumerate(modes):
                ext = "jpg" if mode == "JPEG" else "png"
                write_image(root / split / c / f"{i}-{mode.replace(';', '')}.{ext}", mode, rng, h, w)
    return root


def reference_arrays(root: Path, channels: int = 3) -> dict[str, np.ndarray]:
    """The folder as torchvision's ImageFolder sees it (sorted classes and files, ``convert("RGB")``), uint8."""
    out = {}
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    for split in ("train", "test"):
        xs, ys = [], []
        for label, c in enumerate(classes):
            for p in sorted((root / split / c).iterdir()):
                im = Image.open(p)
                a = np.asarray(im.convert("L" if channels == 1 else "RGB"))
                xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
                ys.append(label)
        out[f"x_{split}"] = np.stack(xs)
        out[f"y_{split}"] = np.array(ys, dtype=np.int64)
    return out


def age(root: Path, seconds: float = 1000.0) -> None:
    """Set every file's mtime ``seconds`` into the past (out of the racy window)."""
    t = time.time() - seconds
    for p in [root, *root.rglob("*")]:
        os.utime(p, (t, t))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small aged folder task ``weather`` with PNGs of modes RGB, L, RGBA, P, 1 and a JPEG per class."""
    root = build_folder(tmp_path / "weather")
    age(root)
    return root


@pytest.fixture
def build():
    """The builders above, for test modules (conftest functions are not importable)."""
    from types import SimpleNamespace

    return SimpleNamespace(folder=build_folder, image=write_image, reference=reference_arrays, age=age,
                           classes=CLASSES)
