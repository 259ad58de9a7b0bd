"""Transfer methods on the bundled backbones: which one keeps most robustness, and did the bound see it coming?

    python scripts/transfer_table.py --n 200 --attack fast                 # robust + standard CNN, fmnist-seen + shapes
    python scripts/transfer_table.py --n 500 --attack standard --epochs 5 --out results/transfer.md

For each (backbone, task) every method of rtcore.transfer (lp, ft, lp-ft, ft-last-k) is adapted
(cached and resumable under the cache dir: a killed run picks up where it stopped) and evaluated
on the same n seeded test points at eps 2/255 and 8/255 (linf). Prints a markdown table (clean
and robust accuracy, bound, mean Delta of the adapted and of the base backbone, relative Delta
Delta/||g(x)|| at the largest eps, since fine-tuning can rescale the features, weight distance
from the pretrained weights, wall time of the adaptation), then one line per (backbone, task):
the method that keeps most robustness, and whether the pre-fine-tuning Delta predicted the
ordering (ranking by bound_pre = mean 1[rho_method(x) > Delta_base(x)], Kendall tau vs robust accuracy).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent

from rtcore import ResultCache, create_backbone, create_task
from rtcore._io import atomic_write
from rtcore.config import eps_key
from rtcore.runs import ProgressEvent, Verdict, compare_methods, method_table, ordering_verdict
from rtcore.transfer import TRANSFER_METHODS, FineTuneRecipe

ROBUST, STANDARD = "fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"


def markdown(table: pd.DataFrame, eps_255: list[int]) -> str:
    cols = ["backbone", "task", "method", "clean acc"]
    for what in ("robust acc", "bound", "mean Δ", "mean Δ base"):
        cols += [f"{what} {k}/255" for k in eps_255]
    last = eps_255[-1]
    cols += [f"rel. Δ {last}/255 base → adapted", "weight dist.", "params trained", "adapt s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * 3 + "---:|" * (len(cols) - 3)]
    for _, r in table.iterrows():
        cells = [r.backbone, r.task, r.method, f"{r.clean_acc:.3f}"]
        for col in ("robust_acc", "bound", "mean_delta", "mean_delta_base"):
            cells += [f"{r[f'{col}@{eps_key(k / 255)}']:.3f}" for k in eps_255]
        cached = " (cached)" if r.adapt_cached else ""
        e = eps_key(last / 255)
        cells += [f"{r[f'mean_relative_delta_base@{e}']:.3f} → {r[f'mean_relative_delta@{e}']:.3f}"]
        cells += [f"{r.weight_distance:.3f}", f"{r.params_trained:,}", f"{r.adapt_seconds:.1f}{cached}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def stage_printer(tag: str, t0: float) -> Callable[[ProgressEvent], None]:
    """A progress callback that prints each new stage once, with the seconds since ``t0``."""
    last = [""]

    def progress(ev: ProgressEvent) -> None:
        if ev.stage != last[0]:
            print(f"[{time.perf_counter() - t0:6.1f} s] {tag}: {ev.stage}", file=sys.stderr, flush=True)
            last[0] = ev.stage

    return progress


def verdict_line(v: Verdict, eps_text: str) -> str:
    """One line of the markdown: the most robust methods and whether the pre-fine-tuning Delta predicted them."""
    tau = "undefined (ties)" if math.isnan(v.kendall_tau) else f"{v.kendall_tau:+.2f}"
    return (f"at eps {eps_text}: most robust {' = '.join(v.best)} (robust acc {v.robust_acc:.3f}); "
            f"the pre-fine-tuning Delta ranks {' = '.join(v.predicted_best)} first: "
            f"{'predicted' if v.agrees else 'not predicted'}; Kendall tau of the orderings {tau}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=[ROBUST, STANDARD])
    p.add_argument("--tasks", nargs="+", default=["fmnist-seen", "shapes"])
    p.add_argument("--methods", nargs="+", default=list(TRANSFER_METHODS), choices=TRANSFER_METHODS)
    p.add_argument("--k", type=int, default=1, help="blocks trained by ft-last-k (default 1: the fc layer)")
    p.add_argument("--eps", nargs="+", type=int, default=[2, 8], help="linf budgets in units of 1/255")
    p.add_argument("--n", type=int, default=200, help="test points per task")
    p.add_argument("--attack", default="fast", help="attack preset: fast, standard, strong")
    p.add_argument("--epochs", type=int, default=FineTuneRecipe.epochs)
    p.add_argument("--lr", type=float, default=FineTuneRecipe.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="default: $RTCORE_CACHE_DIR or ~/.cache/rtcore")
    p.add_argument("--out", type=Path, help="also write the markdown here")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    recipe = FineTuneRecipe(epochs=args.epochs, lr=args.lr)
    cache = ResultCache(args.cache_dir)
    eps = [k / 255 for k in args.eps]
    tables, verdicts = [], []
    t_all = time.perf_counter()
    for name in args.backbones:
        g = create_backbone(name)
        for task_name in args.tasks:
            task = create_task(task_name, cache_dir=cache.root)
            t0 = time.perf_counter()
            res = compare_methods(g, task, eps, "linf", args.n, methods=args.methods, k=args.k, attack=args.attack,
                                  seed=args.seed, cache=cache, recipe=recipe,
                                  progress=stage_printer(f"{name} / {task_name}", t0))
            tables.append(method_table(res, eps))
            lines = [verdict_line(ordering_verdict(res.summary, eps_key(e)), f"{k}/255") for e, k in zip(eps, args.eps)]
            verdicts.append(f"- **{name} / {task_name}** ({time.perf_counter() - t0:.0f} s): " + "; ".join(lines))
    table = pd.concat(tables, ignore_index=True)
    text = "\n".join([
        f"Transfer methods, n = {args.n} test points, '{args.attack}' attack, linf; fine-tuning: {recipe}.",
        "", markdown(table, args.eps), "", *verdicts, "",
        (f"Total wall time: {time.perf_counter() - t_all:.0f} s on {torch.get_num_threads()} CPU threads "
         f"(adaptations marked 'cached' were loaded, their time is the original one)."),
    ])
    print(text)
    if args.out:
        atomic_write(args.out, (text + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
