"""Compare rtcore's 'strong' attack preset with AutoAttack on the same points.

For each bundled backbone and task: the pipeline's logistic probe (fitted on the task's train
features, cached), the same seeded ``n`` test points, and per eps the robust accuracy of
``rtcore.attack(..., settings="strong")`` and of ``settings="autoattack"`` (pyautoattack's APGD-CE
+ APGD-T, 100 iterations, up to 9 target classes: AutoAttack's standard version without FAB-T and
Square, which rarely add anything on undefended or adversarially trained CNNs; ``--aa-version
standard`` runs them too). Both go through rtcore.attack, so both search on the same fused copy,
attack eps in increasing order, skip broken points and have robustness recomputed on the original
model: the times compare the attacks, not the plumbing. Prints a markdown table::

    python scripts/strong_vs_autoattack.py                 # n=500, 2 backbones x 2 tasks x 2 eps
    python scripts/strong_vs_autoattack.py --n 100 --threads 1

Target: strong's robust accuracy <= AutoAttack's + 0.5 percentage points on every row.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import rtcore  # noqa: E402
from rtcore import steps  # noqa: E402
from rtcore.attacks import resolve_settings  # noqa: E402
from rtcore.pipeline import test_indices  # noqa: E402

TOLERANCE = 0.005  # strong may be at most 0.5 points above AutoAttack


def timed(fn):  # type: ignore[no-untyped-def]
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--backbones", nargs="+", default=["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"])
    p.add_argument("--tasks", nargs="+", default=["fmnist-seen", "fmnist-novel"])
    p.add_argument("--eps", nargs="+", type=float, default=[2 / 255, 8 / 255])
    p.add_argument("--norm", default="linf")
    p.add_argument("--strength", default="strong", help="the rtcore strength compared with AutoAttack")
    p.add_argument("--aa-version", default="custom", choices=["custom", "standard"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    ours = resolve_settings(a.strength)
    aa = replace(resolve_settings("autoattack"), autoattack=a.aa_version)
    cache = rtcore.ResultCache()
    lines = [f"rtcore `{a.strength}` ({rtcore.attacks.describe(ours)}) vs AutoAttack `{a.aa_version}` "
             f"(pyautoattack {__import__('pyautoattack').__version__}); {a.norm}; n={a.n} seeded test points per task; "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}. "
             f"Times are wall / process CPU seconds of one call covering all eps.", "",
             "| backbone | task | eps | clean | robust acc (ours) | robust acc (AutoAttack) | ours - AA (pts) "
             "| only ours breaks | only AA breaks | within +0.5 pt | ours s (wall/cpu) | AA s (wall/cpu) | AA / ours (cpu) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    all_ok = True
    for name in a.backbones:
        g = rtcore.create_backbone(name, device=a.device)
        for task_name in a.tasks:
            task = rtcore.load_task(task_name)
            probe = steps.fit_probe(g, task, cache)
            model = rtcore.ProbedModel(g, probe.as_module().to(g.device))
            idx = test_indices(task.x_test.shape[0], a.n, 0)
            x, y = task.x_test[idx], task.y_test[idx]
            r_ours, w_o, c_o = timed(lambda: rtcore.attack(model, x, y, a.eps, norm=a.norm, settings=ours))
            r_aa, w_a, c_a = timed(lambda: rtcore.attack(model, x, y, a.eps, norm=a.norm, settings=aa))
            clean = float(r_ours.clean_correct.double().mean())
            for i, e in enumerate(a.eps):
                ra_o, ra_a = float(r_ours.robust[i].double().mean()), float(r_aa.robust[i].double().mean())
                only_o = int((~r_ours.robust[i] & r_aa.robust[i]).sum())
                only_a = int((r_ours.robust[i] & ~r_aa.robust[i]).sum())
                ok = ra_o <= ra_a + TOLERANCE
                all_ok &= ok
                t = f"{w_o:.1f} / {c_o:.1f}" if i == 0 else '"'
                ta = f"{w_a:.1f} / {c_a:.1f}" if i == 0 else '"'
                ratio = f"{c_a / c_o:.2f}x" if i == 0 else '"'
                lines.append(f"| {name} | {task_name} | {e * 255:.0f}/255 | {100 * clean:.1f}% | {100 * ra_o:.1f}% | "
                             f"{100 * ra_a:.1f}% | {100 * (ra_o - ra_a):+.1f} | {only_o} | {only_a} | "
                             f"{'yes' if ok else 'NO'} | {t} | {ta} | {ratio} |")
            print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", f"Target (ours <= AutoAttack + 0.5 pt on every row): {'met' if all_ok else 'NOT met'}."]
    print("\n".join(lines))
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
