"""Command line: ``python -m rtcore list`` and ``python -m rtcore evaluate ...`` (progress on stderr)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from ._io import atomic_write
from .attacks import STRENGTHS, describe
from .config import NORMS
from .data import list_tasks, task_info
from .errors import RtcoreError
from .models import backbone_specs, create_backbone
from .pipeline import ProgressEvent, run_evaluation
from .probes import list_probes
from .transfer import TRANSFER_METHODS
from .sanity import SanityFlag


def _cmd_list(_: argparse.Namespace) -> int:
    print("backbones:")
    for name, spec in backbone_specs().items():
        print(f"  {name:45s} {spec.kind:8s} {'offline' if spec.offline else 'needs download':15s} {spec.description}")
    print("  timm:<model>  any timm model name (pretrained weights from the cache, a download, or --weights)")
    print("tasks:")
    for name in list_tasks():
        info = task_info(name)
        print(f"  {name:15s} {info.domain:14s} {'offline' if info.offline else 'needs download':15s} {info.description}")
    return 0


def _progress(ev: ProgressEvent) -> None:
    where = f" [{ev.task}]" if ev.task else ""
    print(f"\r{100 * ev.fraction:5.1f}% {ev.stage}{where}".ljust(60), end="", file=sys.stderr, flush=True)
    if ev.stage == "done":
        print(file=sys.stderr)


def _write_csv(df: pd.DataFrame, path: str) -> None:
    atomic_write(path, df.to_csv(index=False).encode())


def _cmd_evaluate(args: argparse.Namespace) -> int:
    backbone = create_backbone(args.backbone, weights=args.weights, pretrained=not args.no_pretrained)
    ev = run_evaluation(backbone, args.tasks, args.eps, args.norm, args.n, attack=args.attack, seed=args.seed,
                        probe=args.probe, probe_eps=args.probe_eps, cache_dir=args.cache_dir,
                        use_cache=not args.no_cache, progress=_progress, download=args.download,
                        sanity=args.sanity, transfer=args.transfer, transfer_k=args.transfer_k)
    if ev.recomputed:
        print(f"note: {len(ev.recomputed)} cache entries failed verification and were recomputed:", file=sys.stderr)
        for line in ev.recomputed:
            print(f"  {line}", file=sys.stderr)
    if args.out:
        _write_csv(ev.summary, args.out)
    if args.samples_out:
        _write_csv(ev.samples, args.samples_out)
    cols = ["backbone", "task", "probe", "norm", "eps", "n", "clean_acc", "robust_acc", "bound", "bound_head",
            "mean_delta"]
    print(ev.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.sanity:
        _print_sanity(ev.sanity)
    return 0


def _print_sanity(flags: dict[str, list[SanityFlag]]) -> None:
    """One line per task; a flagged task gets one line per failed check, with its numbers."""
    print("\nsanity checks (rtcore.sanity):")
    for task, fl in flags.items():
        failed = [f for f in fl if not f.passed]
        skipped = [f.name for f in fl if f.skipped]
        note = f" (skipped: {', '.join(skipped)})" if skipped else ""
        if not failed:
            print(f"  {task}: ok{note}")
            continue
        print(f"  {task}: FLAGGED ({', '.join(f.name for f in failed)}): the robust accuracy above may be "
              f"an overestimate{note}")
        for f in failed:
            vals = ", ".join(f"{k}={v:.4g}" for k, v in f.values.items())
            print(f"    ! {f.name}: {vals}; expected: {f.threshold}; {f.meaning}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rtcore", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list backbones and tasks").set_defaults(fn=_cmd_list)
    e = sub.add_parser("evaluate", help="bound vs empirical robust accuracy per task and eps")
    e.add_argument("--backbone", required=True, help="registry name or timm:<model>")
    e.add_argument("--weights", help="local safetensors weights for the backbone's architecture")
    e.add_argument("--no-pretrained", action="store_true", help="the backbone's architecture with random weights")
    e.add_argument("--tasks", nargs="+", required=True)
    e.add_argument("--eps", nargs="+", type=float, required=True,
                   help="budgets in [0,1] pixel units, e.g. 0.00392 0.00784 0.0157 0.0314 (1, 2, 4, 8 / 255)")
    e.add_argument("--norm", default="linf", choices=list(NORMS))
    e.add_argument("--n", type=int, default=500, help="test points per task")
    e.add_argument("--attack", default="standard", choices=list(STRENGTHS),
                   help="attack strength: " + "; ".join(f"{k}: {describe(k)}" for k in STRENGTHS))
    e.add_argument("--sanity", action="store_true",
                   help="also run the sanity checks (monotone/large eps, noise, more steps, Square) and print flags")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--probe", default="logistic", choices=list_probes(),
                   help="linear head: logistic (C on a held-out split), logistic-std, robust (Delta-aware)")
    e.add_argument("--probe-eps", type=float, help="budget whose training-point Delta sets the robust probe's radius "
                                                    "(default 2/255 linf, 0.2 l2)")
    e.add_argument("--transfer", default="lp", choices=list(TRANSFER_METHODS),
                   help="lp: probe the frozen backbone; ft, lp-ft, ft-last-k: fine-tune it per task first (cached)")
    e.add_argument("--transfer-k", type=int, default=1, help="blocks trained by ft-last-k")
    e.add_argument("--out", help="summary CSV")
    e.add_argument("--samples-out", help="per-sample CSV")
    e.add_argument("--cache-dir", help="result cache (default $RTCORE_CACHE_DIR or ~/.cache/rtcore)")
    e.add_argument("--no-cache", action="store_true")
    e.add_argument("--download", action="store_true", help="allow dataset downloads")
    e.set_defaults(fn=_cmd_evaluate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (ValueError, RtcoreError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2

