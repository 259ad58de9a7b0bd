"""Procedural image datasets: dSprites-style shapes and rendered digit glyphs.

Everything here is a pure function of ``(seed, sizes)``: the same call gives
bit-identical arrays on any machine.  To make that hold, per-pixel work only
uses multiplication, addition and comparison (exact in IEEE arithmetic); the
few trigonometric values are computed per image with :mod:`math` on Python
floats, and random numbers come from :class:`numpy.random.Generator` (PCG64)
seeded through :class:`numpy.random.SeedSequence`.  Digit glyphs use only
Pillow's built-in font (embedded in Pillow, never a system font) and stroke
fonts defined in this file as polylines, so rendering is identical for a given
Pillow version; the Pillow version is part of the glyph cache key.

Their disk cache is :mod:`rtcore.data.task_cache`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

__all__ = [
    "GeneratedData",
    "SHAPE_CLASSES",
    "GLYPH_CLASSES",
    "GLYPH_FONTS",
    "IMAGE_SIZE",
    "balanced_labels",
    "render_shapes",
    "render_glyphs",
    "generate_shapes",
    "generate_glyphs",
    "GENERATORS",
]

IMAGE_SIZE = 28
_SUPERSAMPLE = 4
_HI = IMAGE_SIZE * _SUPERSAMPLE

SHAPE_CLASSES: tuple[str, ...] = ("square", "ellipse", "heart")
GLYPH_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
GLYPH_FONTS: tuple[str, ...] = ("pillow-default", "seven-segment", "hand-polyline")

# Bump when the output of a generator changes, so stale caches are not reused.
_SHAPES_VERSION = 1
_GLYPHS_VERSION = 1


@dataclass(frozen=True)
class GeneratedData:
    """Arrays of one generated dataset: images (N,1,28,28) float32 in [0,1], labels (N,) int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


def balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` labels in ``0..k-1`` in random order, each class count within 1 of ``n/k``."""
    if n < 0 or k < 1:
        raise ValueError(f"need n >= 0 and k >= 1, got n={n}, k={k}")
    return rng.permutation(np.arange(n, dtype=np.int64) % k)


def split_rngs(seed: int, salt: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent train/test generators for ``seed`` (salt keeps datasets' streams apart)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    tr, te = np.random.SeedSequence([int(seed), salt]).spawn(2)
    return np.random.Generator(np.random.PCG64(tr)), np.random.Generator(np.random.PCG64(te))


def _pool(hi: np.ndarray) -> np.ndarray:
    """Average-pool (B, 112, 112) supersampled images to (B, 1, 28, 28) float32."""
    b = hi.shape[0]
    pooled = hi.reshape(b, IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE).mean(axis=(2, 4))
    return pooled.astype(np.float32).reshape(b, 1, IMAGE_SIZE, IMAGE_SIZE)


def _generate_balanced(n_train: int, n_test: int, seed: int, salt: int, classes: tuple[str, ...],
                       render: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> GeneratedData:
    """A generated dataset: balanced labels over ``classes`` for each split, then their images by ``render``,
    each split from its own stream of :func:`split_rngs` (``seed``, ``salt``)."""
    rng_tr, rng_te = split_rngs(seed, salt=salt)
    y_tr = balanced_labels(n_train, len(classes), rng_tr)
    y_te = balanced_labels(n_test, len(classes), rng_te)
    return GeneratedData(render(y_tr, rng_tr), y_tr, render(y_te, rng_te), y_te, classes)


# --------------------------------------------------------------------------- shapes


def render_shapes(labels: np.ndarray, rng: np.random.Generator, *, chunk: int = 256) -> np.ndarray:
    """Render white-on-black square/ellipse/heart images for ``labels`` (0, 1, 2).

    Each image gets a random half-size (4 to 8 px), rotation (0 to 360 degrees)
    and position (the whole shape stays inside the frame).  Shapes are
    rasterised at 4x resolution by an exact inside test at each sub-pixel
    centre, then averaged down, which anti-aliases the edges.
    """
    n = len(labels)
    scale = rng.uniform(4.0, 8.0, size=n)
    angle = rng.uniform(0.0, 2.0 * math.pi, size=n)
    radius = 1.42 * scale  # bounds every shape at any rotation
    cx = rng.uniform(radius, IMAGE_SIZE - radius)
    cy = rng.uniform(radius, IMAGE_SIZE - radius)
    cos_t = np.array([math.cos(a) for a in angle])
    sin_t = np.array([math.sin(a) for a in angle])
    coords = (np.arange(_HI, dtype=np.float64) + 0.5) / _SUPERSAMPLE
    gx = coords[None, None, :]
    gy = coords[None, :, None]
    out = np.empty((n, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        c = cos_t[sl, None, None]
        s = sin_t[sl, None, None]
        k = scale[sl, None, None]
        dx = gx - cx[sl, None, None]
        dy = gy - cy[sl, None, None]
        u = (c * dx + s * dy) / k
        v = (c * dy - s * dx) / k
        lab = np.asarray(labels[sl])
        mask = np.empty(u.shape, dtype=bool)
        for cls in np.unique(lab):
            m = lab == cls
            uu, vv = u[m], v[m]
            if cls == 0:  # square, half-side 1
                mask[m] = np.maximum(np.abs(uu), np.abs(vv)) <= 1.0
            elif cls == 1:  # ellipse, semi-axes 1 and 0.6
                mask[m] = uu * uu + (vv / 0.6) * (vv / 0.6) <= 1.0
            else:  # heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, y up, centred
                hx = 1.2 * uu
                hy = -1.2 * vv + 0.12
                r = hx * hx + hy * hy - 1.0
                mask[m] = r * r * r - hx * hx * hy * hy * hy <= 0.0
        out[sl] = _pool(mask.astype(np.float32))
    return out


def generate_shapes(n_train: int = 3000, n_test: int = 1500, seed: int = 0) -> GeneratedData:
    """dSprites-style dataset: 3 balanced shape classes, white on black, 1x28x28."""
    return _generate_balanced(n_train, n_test, seed, 0x5A1E, SHAPE_CLASSES, render_shapes)


# --------------------------------------------------------------------------- glyphs

# Stroke fonts: digit -> list of polylines in a box x in [0, 1], y in [0, 2] (y down).
_SEG_POINTS = {"a": ((0, 0), (1, 0)), "b": ((1, 0), (1, 1)), "c": ((1, 1), (1, 2)),
               "d": ((0, 2), (1, 2)), "e": ((0, 1), (0, 2)), "f": ((0, 0), (0, 1)),
               "g": ((0, 1), (1, 1))}
_SEG_DIGITS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg",
               "abcdfg")


def _loop(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> list[tuple[float, float]]:
    """Closed polygon approximating an ellipse (computed once at import, off the data path)."""
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n))
            for i in range(n + 1)]


_HAND_DIGITS: tuple[list[list[tuple[float, float]]], ...] = (
    [_loop(0.5, 1.0, 0.48, 0.98)],
    [[(0.25, 0.4), (0.6, 0.0), (0.6, 2.0)], [(0.3, 2.0), (0.9, 2.0)]],
    [[(0.05, 0.45), (0.2, 0.1), (0.5, 0.0), (0.8, 0.1), (0.95, 0.45), (0.8, 0.85), (0.0, 2.0),
      (1.0, 2.0)]],
    [[(0.05, 0.2), (0.4, 0.0), (0.85, 0.15), (0.9, 0.5), (0.6, 0.9), (0.35, 0.95)],
     [(0.6, 0.9), (0.95, 1.3), (0.9, 1.75), (0.5, 2.0), (0.05, 1.8)]],
    [[(0.75, 2.0), (0.75, 0.0), (0.0, 1.4), (1.0, 1.4)]],
    [[(0.9, 0.0), (0.15, 0.0), (0.1, 0.9), (0.5, 0.8), (0.9, 1.0), (1.0, 1.5), (0.8, 1.9),
      (0.4, 2.0), (0.05, 1.8)]],
    [[(0.85, 0.1), (0.5, 0.0), (0.15, 0.4), (0.0, 1.2), (0.1, 1.8), (0.5, 2.0), (0.9, 1.8),
      (1.0, 1.4), (0.8, 1.05), (0.45, 1.0), (0.1, 1.3)]],
    [[(0.0, 0.0), (1.0, 0.0), (0.35, 2.0)], [(0.3, 1.0), (0.9, 1.0)]],
    [_loop(0.5, 0.48, 0.38, 0.46), _loop(0.5, 1.45, 0.48, 0.55)],
    [_loop(0.5, 0.55, 0.45, 0.52), [(0.95, 0.55), (0.9, 1.4), (0.5, 2.0), (0.1, 1.85)]],
)


def _stroke_polylines(font: int, digit: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Polylines (each (P, 2), unit box coords) for ``digit`` in stroke font ``font`` (1 or 2)."""
    if font == 1:
        return [np.array(_SEG_POINTS[seg], dtype=np.float64) for seg in _SEG_DIGITS[digit]]
    lines = [np.array(pl, dtype=np.float64) for pl in _HAND_DIGITS[digit]]
    # Hand-drawn wobble: jitter every vertex a little.
    return [pl + rng.normal(0.0, 0.035, size=pl.shape) for pl in lines]


@lru_cache(maxsize=64)
def _pillow_font(size: int):  # -> ImageFont.FreeTypeFont
    """Pillow's embedded scalable default font at ``size`` px (never a system font)."""
    from PIL import ImageFont, features

    if not features.check("freetype2"):
        raise RuntimeError(
            "the glyphs generator needs Pillow built with FreeType (standard Pillow wheels are); "
            "reinstall Pillow with `pip install --force-reinstall pillow`"
        )
    return ImageFont.load_default(size=size)


def _render_glyph(digit: int, font: int, rng: np.random.Generator) -> np.ndarray:
    """Render one digit at 4x resolution; returns a (112, 112) uint8 array."""
    from PIL import Image, ImageDraw

    height = rng.uniform(13.0, 21.0) * _SUPERSAMPLE  # glyph height in hi-res px
    angle = rng.uniform(-20.0, 20.0)
    slack = max(0.0, (_HI - 1.2 * height) / 2.0)
    cx = _HI / 2.0 + rng.uniform(-slack, slack)
    cy = _HI / 2.0 + rng.uniform(-slack, slack)
    width = rng.uniform(1.2, 3.0) * _SUPERSAMPLE
    level = int(round(255 * rng.uniform(0.75, 1.0)))
    img = Image.new("L", (_HI, _HI), 0)
    draw = ImageDraw.Draw(img)
    if font == 0:
        size = int(round(height / 0.72))
        stroke = int(rng.integers(0, 5))
        f = _pillow_font(size)
        text = str(digit)
        x0, y0, x1, y1 = f.getbbox(text, stroke_width=stroke)
        pos = (cx - (x0 + x1) / 2.0, cy - (y0 + y1) / 2.0)
        draw.text(pos, text, font=f, fill=level, stroke_width=stroke, stroke_fill=level)
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, center=(cx, cy))
    else:
        slant = rng.uniform(-0.25, 0.25)
        k = height / 2.0
        rad = math.radians(angle)
        c, s = math.cos(rad), math.sin(rad)
        w = int(round(width))
        for pl in _stroke_polylines(font, digit, rng):
            x = (pl[:, 0] - 0.5 + slant * (1.0 - pl[:, 1]) * 0.5) * k
            y = (pl[:, 1] - 1.0) * k
            px = cx + c * x - s * y
            py = cy + s * x + c * y
            pts = list(zip(px.tolist(), py.tolist()))
            draw.line(pts, fill=level, width=w, joint="curve")
            r = w / 2.0
            for qx, qy in (pts[0], pts[-1]):  # round caps
                draw.ellipse((qx - r, qy - r, qx + r, qy + r), fill=level)
    return np.asarray(img, dtype=np.uint8)


def render_glyphs(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render digit images for ``labels`` with random font, size, position, rotation, noise.

    Fonts (uniform): Pillow's built-in scalable font with random stroke, a
    seven-segment stroke font and a jittered hand-drawn polyline font, both
    drawn with random stroke width and slant.  Rendered at 4x, box-averaged to
    28x28, then Gaussian noise with a per-image sigma in [0.02, 0.12] is added
    and the result clipped to [0, 1].
    """
    n = len(labels)
    fonts = rng.integers(0, len(GLYPH_FONTS), size=n)
    hi = np.empty((n, _HI, _HI), dtype=np.float32)
    for i in range(n):
        hi[i] = _render_glyph(int(labels[i]), int(fonts[i]), rng)
    x = _pool(hi) / np.float32(255.0)
    sigma = rng.uniform(0.02, 0.12, size=(n, 1, 1, 1)).astype(np.float32)
    noise = rng.standard_normal(size=x.shape, dtype=np.float32) * sigma
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32)


def generate_glyphs(n_train: int = 5000, n_test: int = 2000, seed: int = 0) -> GeneratedData:
    """Rendered digits 0-9, balanced, 1x28x28, white on black with additive noise."""
    return _generate_balanced(n_train, n_test, seed, 0x61F5, GLYPH_CLASSES, render_glyphs)


# --------------------------------------------------------------------------- registry

#: kind -> (generator, class names, version); the version is part of the cache key
GENERATORS: dict[str, tuple[Callable[..., GeneratedData], tuple[str, ...], int]] = {
    "shapes": (generate_shapes, SHAPE_CLASSES, _SHAPES_VERSION),
    "glyphs": (generate_glyphs, GLYPH_CLASSES, _GLYPHS_VERSION),
}
