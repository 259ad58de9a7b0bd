"""Reader for the official *binary* versions of CIFAR-10 and CIFAR-100 (numpy only, no pickle).

The binary archives (https://www.cs.toronto.edu/~kriz/cifar.html) store fixed-size
records with no header:

* CIFAR-10 (``cifar-10-batches-bin/data_batch_{1..5}.bin``, ``test_batch.bin``):
  1 label byte (0-9), then 3072 pixel bytes;
* CIFAR-100 (``cifar-100-binary/train.bin``, ``test.bin``): 1 coarse-label byte
  (0-19), 1 fine-label byte (0-99), then 3072 pixel bytes.

The 3072 pixel bytes are three 32x32 planes, red, then green, then blue, each in
row-major order, so a record reshapes directly to (3, 32, 32) CHW.  Class names
are plain text, one per line (``batches.meta.txt``, ``fine_label_names.txt``,
``coarse_label_names.txt``).

Files are parsed with :func:`numpy.frombuffer`: nothing executable is ever read
from disk (the "python" versions of CIFAR are pickles and are not supported).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

__all__ = [
    "CIFARFormatError",
    "CIFAR_IMAGE_SHAPE",
    "CIFAR_PIXEL_BYTES",
    "read_cifar_bin",
    "write_cifar_bin",
    "read_label_names",
]

PathLike = Union[str, "os.PathLike[str]"]

CIFAR_IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)
CIFAR_PIXEL_BYTES = 3 * 32 * 32


class CIFARFormatError(ValueError):
    """Raised when a CIFAR binary or label-name file is malformed (truncated, bad labels...)."""


def read_cifar_bin(path: PathLike, *, label_bytes: int,
                   num_labels: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR binary batch file.

    ``label_bytes`` is 1 for CIFAR-10 and 2 for CIFAR-100 (coarse, fine).
    ``num_labels``, if given, holds the number of classes for each label byte;
    a label outside ``0..num_labels[i]-1`` is an error.

    Returns ``(images, labels)``: images (N, 3, 32, 32) uint8 with channels in
    R, G, B order; labels (N, label_bytes) int64 in file order.

    Raises :class:`FileNotFoundError` if ``path`` is missing and
    :class:`CIFARFormatError` if it is empty, its size is not a multiple of the
    record length (truncated or padded), or a label is out of range.
    """
    if label_bytes < 1:
        raise ValueError(f"label_bytes must be >= 1, got {label_bytes}")
    if num_labels is not None and len(num_labels) != label_bytes:
        raise ValueError(f"num_labels {num_labels} must have {label_bytes} entries")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"CIFAR binary file not found: {p}")
    data = p.read_bytes()
    record = label_bytes + CIFAR_PIXEL_BYTES
    if len(data) == 0 or len(data) % record:
        raise CIFARFormatError(
            f"{p}: file size {len(data)} bytes is not a positive multiple of the {record}-byte "
            f"record ({label_bytes} label byte(s) + {CIFAR_PIXEL_BYTES} pixel bytes); the file is "
            f"truncated or corrupt ({len(data) // record} whole records, {len(data) % record} "
            "bytes left over)"
        )
    n = len(data) // record
    rec = np.frombuffer(data, dtype=np.uint8).reshape(n, record)
    labels = rec[:, :label_bytes].astype(np.int64)
    if num_labels is not None:
        for i, k in enumerate(num_labels):
            bad = np.flatnonzero(labels[:, i] >= k)
            if bad.size:
                raise CIFARFormatError(
                    f"{p}: record {int(bad[0])} has label byte {i} = {int(labels[bad[0], i])}, "
                    f"outside 0..{k - 1}; the file is corrupt or not a CIFAR binary of this kind"
                )
    images = np.ascontiguousarray(rec[:, label_bytes:]).reshape(n, *CIFAR_IMAGE_SHAPE)
    return images, labels


def write_cifar_bin(path: PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N, 3, 32, 32) uint8 and labels (N,) or (N, L) in the CIFAR binary layout.

    The inverse of :func:`read_cifar_bin` (used to build test fixtures).
    """
    x = np.asarray(images)
    y = np.asarray(labels)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != CIFAR_IMAGE_SHAPE:
        raise ValueError(f"images must be uint8 (N, 3, 32, 32), got {x.dtype} {x.shape}")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != x.shape[0] or y.min(initial=0) < 0 or y.max(initial=0) > 255:
        raise ValueError(f"labels must be (N,) or (N, L) in 0..255 for N={x.shape[0]}, got {y.shape}")
    rec = np.concatenate([y.astype(np.uint8), x.reshape(x.shape[0], -1)], axis=1)
    Path(path).write_bytes(np.ascontiguousarray(rec).tobytes())


def read_label_names(path: PathLike, count: int) -> tuple[str, ...]:
    """Class names from a CIFAR text file, one per line (blank lines ignored); exactly ``count``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CIFARFormatError(f"{p}: not a UTF-8 text file ({exc})") from exc
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != count or len(set(names)) != count:
        raise CIFARFormatError(
            f"{p}: expected {count} distinct class names, one per line, found {len(names)} "
            f"({len(set(names))} distinct)"
        )
    return names
