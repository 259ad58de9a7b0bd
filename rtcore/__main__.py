"""Command line: ``python -m rtcore list`` and ``python -m rtcore evaluate ...`` (progress on stderr)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence

from . import backbone_specs, list_tasks, run_evaluation, task_info
from .attacks import PRESETS
from .backbones import BackboneUnavailableError, CheckpointError
from .pipeline import ProgressEvent
from .tasks import TaskUnavailableError


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


def _write_csv_atomic(df, path: str) -> None:  # type: ignore[no-untyped-def]
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".csv")
    os.close(fd)
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .backbones import create_backbone

    backbone = args.backbone
    if args.weights or args.no_pretrained:
        backbone = create_backbone(args.backbone, weights=args.weights, pretrained=not args.no_pretrained)
    ev = run_evaluation(backbone, args.tasks, args.eps, args.norm, args.n, attack=args.attack, seed=args.seed,
                        cache_dir=args.cache_dir, use_cache=not args.no_cache, progress=_progress,
                        download=args.download)
    if args.out:
        _write_csv_atomic(ev.summary, args.out)
    if args.samples_out:
        _write_csv_atomic(ev.samples, args.samples_out)
    cols = ["backbone", "task", "norm", "eps", "n", "clean_acc", "robust_acc", "bound", "mean_delta"]
    print(ev.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rtcore", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list backbones and tasks").set_defaults(fn=_cmd_list)
    e = sub.add_parser("evaluate", help="bound vs empirical robust accuracy per task and eps")
    e.add_argument("--backbone", required=True, help="registry name or timm:<model>")
    e.add_argument("--weights", help="local safetensors weights for a timm backbone")
    e.add_argument("--no-pretrained", action="store_true", help="timm backbone with random weights")
    e.add_argument("--tasks", nargs="+", required=True)
    e.add_argument("--eps", nargs="+", type=float, required=True, help="budgets in [0,1] pixel units")
    e.add_argument("--norm", default="linf", choices=["linf", "l2"])
    e.add_argument("--n", type=int, default=500, help="test points per task")
    e.add_argument("--attack", default="standard", choices=list(PRESETS))
    e.add_argument("--seed", type=int, default=0)
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
    except (ValueError, TaskUnavailableError, BackboneUnavailableError, CheckpointError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
