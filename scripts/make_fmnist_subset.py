#!/usr/bin/env python3
"""Build the bundled Fashion-MNIST subset in assets/data/fashion-mnist-subset from a full local copy.

The subset keeps train indices [50000, 56000) (held out from upstream
pretraining, all ten classes) and test indices [0, 4000), as gzip IDX files
with the same names as the official ones, plus ``*-indices-idx1-int.gz`` files
recording the original index of every image, a ``SHA256SUMS`` file and a
README.  Output is byte-for-byte reproducible (gzip mtime 0).

Usage::

    python scripts/make_fmnist_subset.py [--source /usr/share/datasets/fashion-mnist] [--out DIR]

Without ``--source`` the full copy is found like rtcore does (RTCORE_FASHION_MNIST,
/usr/share/datasets/fashion-mnist, the rtcore data folder).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

from rtcore.data.idx import read_idx, write_idx
from rtcore.data.fashion_mnist import (
    BUNDLED_FMNIST_DIR,
    FASHION_MNIST_CLASSES,
    HELDOUT_START,
    load_fashion_mnist,
)
from rtcore.data.paths import norm_root

TRAIN_RANGE = (HELDOUT_START, HELDOUT_START + 6000)  # [50000, 56000)
TEST_RANGE = (0, 4000)

README = """\
# Fashion-MNIST subset (bundled)

A small slice of the real Fashion-MNIST dataset, bundled so that rtcore's
offline Fashion-MNIST tasks (`fmnist-novel`, `fmnist-seen`, `fmnist-torso`)
work on machines without a full copy. When a full copy is found it is used
instead (see `rtcore/data/fashion_mnist.py`).

- **Source:** Fashion-MNIST by Zalando Research,
  https://github.com/zalandoresearch/fashion-mnist (Xiao, Rasul, Vollgraf 2017,
  arXiv:1708.07747). Built from the full copy in `{source}` by
  `scripts/make_fmnist_subset.py`.
- **Licence:** MIT (Copyright (c) 2017 Zalando SE), the licence of the original
  dataset; this subset is redistributed under the same terms.
- **Original indices taken (0-based, half-open):**
  - train: official train set indices {tr0}..{tr1_incl} (`[{tr0}, {tr1})`), {n_tr} images.
    These are held out from upstream pretraining, which only uses train
    indices `< {heldout}`.
  - test: official test set indices {te0}..{te1_incl} (`[{te0}, {te1})`), {n_te} images.
- **Class counts:** train {train_counts}; test {test_counts}
  (classes 0-9: {classes}).
- **Files:** gzip IDX files with the official names
  (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
  `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`), plus
  `train-indices-idx1-int.gz` / `t10k-indices-idx1-int.gz` (int32 original
  index of every stored image) and `SHA256SUMS`. Total {total_bytes} bytes.
- **Regenerate:** `python scripts/make_fmnist_subset.py --source <full copy>`
  (deterministic: same input gives the same bytes).
"""


def build(source: str | None, out: Path) -> None:
    """Write the subset files, SHA256SUMS and README into ``out``."""
    data = load_fashion_mnist(norm_root(source), require_full=True)
    out.mkdir(parents=True, exist_ok=True)
    tr = slice(*TRAIN_RANGE)
    te = slice(*TEST_RANGE)
    files = {
        "train-images-idx3-ubyte.gz": data.x_train[tr].astype(np.uint8),
        "train-labels-idx1-ubyte.gz": data.y_train[tr].astype(np.uint8),
        "train-indices-idx1-int.gz": np.arange(*TRAIN_RANGE, dtype=np.int32),
        "t10k-images-idx3-ubyte.gz": data.x_test[te].astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": data.y_test[te].astype(np.uint8),
        "t10k-indices-idx1-int.gz": np.arange(*TEST_RANGE, dtype=np.int32),
    }
    for name, arr in files.items():
        write_idx(out / name, arr)
        if not np.array_equal(read_idx(out / name), arr):
            raise SystemExit(f"round trip failed for {out / name}")
    sums = "".join(f"{hashlib.sha256((out / n).read_bytes()).hexdigest()}  {n}\n"
                   for n in sorted(files))
    (out / "SHA256SUMS").write_text(sums)
    total = sum((out / n).stat().st_size for n in files)
    counts = lambda y: ", ".join(str(int(c)) for c in np.bincount(y, minlength=10))  # noqa: E731
    (out / "README.md").write_text(README.format(
        source=data.folder, tr0=TRAIN_RANGE[0], tr1=TRAIN_RANGE[1], tr1_incl=TRAIN_RANGE[1] - 1,
        te0=TEST_RANGE[0], te1=TEST_RANGE[1], te1_incl=TEST_RANGE[1] - 1,
        n_tr=TRAIN_RANGE[1] - TRAIN_RANGE[0], n_te=TEST_RANGE[1] - TEST_RANGE[0],
        heldout=HELDOUT_START, train_counts=counts(files["train-labels-idx1-ubyte.gz"]),
        test_counts=counts(files["t10k-labels-idx1-ubyte.gz"]),
        classes=", ".join(FASHION_MNIST_CLASSES), total_bytes=total,
    ))
    print(f"wrote {len(files)} IDX files ({total} bytes) to {out} from {data.folder}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=None, help="folder with a full Fashion-MNIST copy")
    ap.add_argument("--out", type=Path, default=BUNDLED_FMNIST_DIR, help="output folder")
    args = ap.parse_args(argv)
    build(args.source, args.out)


if __name__ == "__main__":
    main()
