"""Reader and writer for the IDX file format used by MNIST and Fashion-MNIST.

The format (http://yann.lecun.com/exdb/mnist/) is a 4-byte magic number
``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
the array in C order, big-endian.  Files may be gzip-compressed; this module
decides by the gzip signature, not by the file name, so both ``.gz`` and raw
files load through the same function.

Only :mod:`numpy` and :mod:`gzip` are used: no pickle, nothing executable is
ever read from disk.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from .._io import atomic_write

__all__ = ["IDXFormatError", "read_idx", "write_idx", "IDX_DTYPES"]

PathLike = Union[str, "os.PathLike[str]"]

#: IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# Refuse absurd headers before allocating: no real IDX file is this large.
_MAX_ELEMENTS = 1 << 34


class IDXFormatError(ValueError):
    """Raised when a file is not a valid IDX file (bad magic, sizes, truncation)."""


def _read_bytes(path: Path) -> bytes:
    """Return the decompressed bytes of ``path`` (gzip detected by signature)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                    return gz.read()
            return fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IDXFormatError(
            f"{path}: corrupt gzip stream ({exc}); delete the file and obtain a fresh copy"
        ) from exc


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian numpy array.

    Raises :class:`FileNotFoundError` if ``path`` does not exist and
    :class:`IDXFormatError` if the header is invalid or the payload size does
    not match the header (truncated or padded file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"IDX file not found: {p}")
    data = _read_bytes(p)
    if len(data) < 4:
        raise IDXFormatError(f"{p}: file has {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{p}: bad IDX magic number {data[:4].hex()} (first two bytes must be 0x0000); "
            "the file is corrupt or not an IDX file"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise IDXFormatError(
            f"{p}: unknown IDX dtype code 0x{code:02x} in magic {data[:4].hex()}; "
            f"valid codes: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}"
        )
    if ndim == 0:
        raise IDXFormatError(f"{p}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXFormatError(
            f"{p}: truncated header: {ndim} dimensions need {header_len} bytes, file has {len(data)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    n_elem = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if n_elem > _MAX_ELEMENTS:
        raise IDXFormatError(f"{p}: implausible IDX shape {shape}")
    expected = header_len + n_elem * dtype.itemsize
    if len(data) != expected:
        raise IDXFormatError(
            f"{p}: payload size mismatch: header shape {shape} of {dtype.name} needs "
            f"{expected} bytes, file has {len(data)} (truncated or corrupt)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=n_elem, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzip it if ``compress`` (default: name ends in ``.gz``).

    The write is atomic (:func:`rtcore._io.atomic_write`),
    and gzip output uses mtime 0 so the same array always gives the same bytes.
    """
    p = Path(path)
    arr = np.asarray(array)
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got array with ndim={arr.ndim}")
    code = next((c for c, dt in IDX_DTYPES.items() if dt.kind == arr.dtype.kind
                 and dt.itemsize == arr.dtype.itemsize), None)
    if code is None:
        raise ValueError(
            f"dtype {arr.dtype} cannot be stored in IDX; use one of "
            "uint8, int8, int16, int32, float32, float64"
        )
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = p.name.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    atomic_write(p, payload)
