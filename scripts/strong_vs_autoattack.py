"""The docs' strong-vs-AutoAttack table: rtcore's 'strong' and 'standard' against AutoAttack's gradient core.

AutoAttack's APGD-CE + APGD-T (pyautoattack, ``version='custom'``, up to 9 target classes) on the
same seeded points of every row of ``bench/rows.py`` (the bundled CNNs, n = 256; the ResNet-18, n = 128;
a 224-pixel ResNet-50, timing only), interleaved with rtcore's strengths in chunks so that a busy
machine slows all alike; robust accuracy recomputed from the returned images; per eps the points only
one side breaks; CPU times and the ratios AutoAttack / rtcore. This is ``bench/strength.py`` with the
table's contenders (see there for the protocol and the targets)::

    python scripts/strong_vs_autoattack.py                      # every row, 2/255 and 8/255
    python scripts/strong_vs_autoattack.py --rows cnn-robust --n 64

Exit status 0 when every target is met.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ["--contenders", "strong", "standard", "AA custom", "--out", str(ROOT / "bench" / "out" / "strong_vs_autoattack")]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    given = {a for a in args if a.startswith("--")}
    merged, i = [], 0
    while i < len(DEFAULTS):  # the table's defaults, unless given on the command line
        j = i + 1
        while j < len(DEFAULTS) and not DEFAULTS[j].startswith("--"):
            j += 1
        if DEFAULTS[i] not in given:
            merged += DEFAULTS[i:j]
        i = j
    strength = runpy.run_path(str(ROOT / "bench" / "strength.py"), run_name="bench_strength")
    return int(strength["main"](merged + args))


if __name__ == "__main__":
    raise SystemExit(main())
