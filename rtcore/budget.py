"""The input memory budget: one number every reader compares an input's decoded size with, before decoding.

Readers know what an input will take before they decode it: an image's width, height and bands from
its header (Pillow reads no pixels to open a file), an ``.npy`` array's shape and dtype from its
header, a safetensors file's from its JSON header. They compare that with :class:`MemoryBudget` and
refuse, naming the file, the size, the budget and how to raise it, before any large allocation:

* a task's images as they will be held, float32 (N x C x H x W x 4 bytes), at most ``max_bytes`` (while a
  folder is decoded its uint8 arrays and their cache file's bytes are held beside them for a moment: the
  peak is up to 1.5 times that);
* one image at most :attr:`MemoryBudget.max_image_pixels` pixels: every forward and backward pass
  runs on chunks of :data:`CHUNK_ROWS` images (:mod:`rtcore.numerics`), so a chunk of such images,
  float32 RGB, must fit the budget too (4 GB: about 10.4 megapixels, 3229 x 3229). Pillow's own
  decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is set to this limit while a reader opens a
  file, never disabled;
* a checkpoint file at most ``max_bytes``.

The budget is :data:`DEFAULT_MAX_INPUT_BYTES` unless the caller passes ``max_input_bytes=`` (every
reader and loader takes it) or the environment sets :data:`ENV_MAX_INPUT_GB` (in GB, 1e9 bytes).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

from .numerics import CHUNK_ROWS as _ROWS_BY_DEVICE

__all__ = ["CHUNK_ROWS", "CLI_FLAG", "DEFAULT_MAX_INPUT_BYTES", "ENV_MAX_INPUT_GB", "MemoryBudget",
           "check_max_input_bytes", "input_budget"]

#: the budget when neither the caller nor the environment gives one
DEFAULT_MAX_INPUT_BYTES = 4 * 10**9
#: environment variable raising (or lowering) the budget, in GB (1e9 bytes); decimals allowed
ENV_MAX_INPUT_GB = "RTCORE_MAX_INPUT_GB"
#: the command-line flag that sets the budget, in GB (named in the messages)
CLI_FLAG = "--max-input-gb"
#: rows of one chunk of every forward/backward pass on the CPU (:data:`rtcore.numerics.CHUNK_ROWS`)
CHUNK_ROWS = _ROWS_BY_DEVICE["cpu"]
#: bytes one pixel takes in such a chunk: CHUNK_ROWS images x 3 channels x float32
_CHUNK_PIXEL_BYTES = CHUNK_ROWS * 3 * 4


def _gb(n: float) -> str:
    """A size in words: GB from 0.1 GB, MB from 0.1 MB, else bytes."""
    return f"{n / 1e9:.4g} GB" if n >= 1e8 else f"{n / 1e6:.4g} MB" if n >= 1e5 else f"{int(n)} bytes"


def check_max_input_bytes(value: object, name: str = "max_input_bytes") -> int:
    """``value`` as a positive int number of bytes; ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive number of bytes, e.g. 8e9 for 8 GB")
    return int(value)


@dataclass(frozen=True)
class MemoryBudget:
    """``max_bytes``: the most one input may take once decoded; ``source``: where that number came from
    (named in messages)."""

    max_bytes: int
    source: str = "the default"

    @property
    def max_image_pixels(self) -> int:
        """The most pixels one image may have: a chunk of :data:`CHUNK_ROWS` such images, float32 RGB, fits
        ``max_bytes``."""
        return max(1, self.max_bytes // _CHUNK_PIXEL_BYTES)

    def how_to_raise(self) -> str:
        return (f"raise the budget ({self.source}) with {CLI_FLAG} <GB>, max_input_bytes=<bytes> or "
                f"{ENV_MAX_INPUT_GB}=<GB> if this machine has the memory")

    def bytes_problem(self, what: str, nbytes: int) -> str | None:
        """A message when ``what`` needs more than ``max_bytes`` once decoded, else None."""
        if nbytes <= self.max_bytes:
            return None
        return (f"{what} needs {_gb(nbytes)} in memory once decoded, above the input memory budget of "
                f"{_gb(self.max_bytes)}. Fix: use fewer or smaller inputs, or {self.how_to_raise()}")

    def pixels_problem(self, what: str, width: int, height: int) -> str | None:
        """A message when an image of ``width`` x ``height`` is above :attr:`max_image_pixels`, else None."""
        pixels = int(width) * int(height)
        if pixels <= self.max_image_pixels:
            return None
        return self.image_refusal(what, f"is {width}x{height} pixels ({pixels / 1e6:.1f} megapixels; "
                                        f"{_gb(pixels * _CHUNK_PIXEL_BYTES)} for a chunk of them)")

    def image_refusal(self, what: str, detail: str) -> str:
        """The message refusing an image above :attr:`max_image_pixels` (``detail``: its size, in words)."""
        return (f"{what} {detail}, above the {self.max_image_pixels / 1e6:.1f}-megapixel limit per image (every "
                f"pass runs on chunks of {CHUNK_ROWS} images, float32 RGB, and a chunk must fit the input memory "
                f"budget of {_gb(self.max_bytes)}). Fix: downscale the images, or {self.how_to_raise()}")


def input_budget(max_input_bytes: int | float | MemoryBudget | None = None) -> MemoryBudget:
    """The budget in effect: ``max_input_bytes`` when given, else ``$RTCORE_MAX_INPUT_GB``, else
    :data:`DEFAULT_MAX_INPUT_BYTES`. ValueError for a value that is not a positive number."""
    if isinstance(max_input_bytes, MemoryBudget):
        return max_input_bytes
    if max_input_bytes is not None:
        n = check_max_input_bytes(max_input_bytes)
        return MemoryBudget(n, f"max_input_bytes={n}")
    env = os.environ.get(ENV_MAX_INPUT_GB)
    if env is None or not env.strip():
        return MemoryBudget(DEFAULT_MAX_INPUT_BYTES, f"the default {_gb(DEFAULT_MAX_INPUT_BYTES)}")
    try:
        gb = float(env)
    except ValueError:
        gb = float("nan")
    if not (math.isfinite(gb) and gb * 1e9 >= 1):
        raise ValueError(f"{ENV_MAX_INPUT_GB}={env!r} must be a positive number of GB, e.g. 8; or unset it for "
                         f"the default {_gb(DEFAULT_MAX_INPUT_BYTES)}")
    return MemoryBudget(int(gb * 1e9), f"{ENV_MAX_INPUT_GB}={env.strip()}")
