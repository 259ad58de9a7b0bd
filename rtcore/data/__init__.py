"""Data helpers for rtcore tasks: IDX and CIFAR-binary readers and procedural image generators.

:mod:`rtcore.data.idx` reads and writes the MNIST/Fashion-MNIST IDX format
(numpy and gzip only, no pickle); :mod:`rtcore.data.cifar` reads the official
binary CIFAR-10/100 files (numpy only, no pickle); :mod:`rtcore.data.generators` renders the
synthetic ``shapes`` and ``glyphs`` datasets deterministically from a seed and
caches them on disk.  Task-level logic lives in :mod:`rtcore.tasks`.
"""

from .cifar import CIFARFormatError, read_cifar_bin, read_label_names, write_cifar_bin
from .idx import IDXFormatError, read_idx, write_idx

__all__ = ["CIFARFormatError", "IDXFormatError", "read_cifar_bin", "read_idx", "read_label_names",
           "write_cifar_bin", "write_idx"]
