"""The docs' strong-vs-AutoAttack table: rtcore's 'strong' and 'standard' against AutoAttack's gradient core.

AutoAttack's APGD-CE + APGD-T (pyautoattack, ``version='custom'``, up to 9 target classes) on the
same seeded points of each bundled backbone and task, interleaved with rtcore's strengths in
chunks so that a busy machine slows all alike; robust accuracy recomputed from the returned
images; per eps the points only one side breaks; times and the time ratio AutoAttack / rtcore.
This is ``bench/strength.py`` with the table's settings (see there for the protocol)::

    python scripts/strong_vs_autoattack.py                 # n=500, 2 backbones x 2 tasks x 2 eps
    python scripts/strong_vs_autoattack.py --n 100 --threads 1

Targets: strong's robust accuracy <= AutoAttack's + 0.5 points on every row, the union of both
breaks at most 1 % of n more points than strong alone, in at most a third of AutoAttack's CPU
time; standard's robust accuracy <= AutoAttack's + 0.5 points. Exit status 0 when all are met.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ["--n", "500", "--contenders", "strong", "standard", "AA custom", "--chunks", "4",
            "--out", str(ROOT / "bench" / "out" / "strong_vs_autoattack")]


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
