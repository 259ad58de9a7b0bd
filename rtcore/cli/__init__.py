"""Command line: ``python -m rtcore list``, ``python -m rtcore evaluate ...`` and ``python -m rtcore sweep
SPEC.toml ...`` (progress on stderr).

``evaluate`` takes a spec file (``--spec FILE``, TOML or JSON: :mod:`rtcore.runs.spec`) or the
flags that build the same spec; ``--save-spec FILE`` writes the spec the flags built. Everything is
checked before any work (the spec, the output files); the table is printed before the files are
written, and every file is written atomically.

``sweep`` runs a sweep file (:mod:`rtcore.runs.sweep`) on ``--engine local`` (default) or ``ray``;
exit code 0 when every unit is done, 1 when some failed (the rest is written, ``failures.csv`` says
why), 2 for a bad spec or option (nothing runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .._io import atomic_write
from ..budget import CLI_FLAG, DEFAULT_MAX_INPUT_BYTES, ENV_MAX_INPUT_GB, check_max_input_bytes
from ..config import eps_text, resolve_cache_dir
from ..data import list_tasks, task_info
from ..errors import RtcoreError
from ..export import csv_bytes, latex_table
from ..models import backbone_specs
from ..runs import EvalSpec, Executor, execute, load_spec, plan
from ..runs.estimate import estimate, estimate_specs
from ..runs.fields import add_arguments, declared, namespace_values
from ..runs.sweep_spec import MAX_UNITS, load_sweep_spec
from .report import Progress, SweepPrinter, console, estimate_lines, log, sanity_lines

#: the most a summary CSV read by `table` may hold
MAX_TABLE_BYTES = 64 * 10**6
SUMMARY_COLUMNS = ["backbone", "task", "probe", "norm", "eps", "n", "clean_acc", "robust_acc", "bound", "bound_head",
                   "mean_delta"]


def _cmd_list(_: argparse.Namespace) -> int:
    print("backbones:")
    for name, spec in backbone_specs().items():
        print(f"  {name:45s} {spec.kind:8s} {'offline' if spec.offline else 'needs download':15s} {spec.description}")
    print("  timm:<model>  any timm model name (pretrained weights from the cache, a download, or --weights)")
    print("tasks:")
    for name in list_tasks():
        info = task_info(name)
        print(f"  {name:15s} {info.domain:14s} {'offline' if info.offline else 'needs download':15s} {info.description}")
    print("  folder:PATH   an image folder (PATH/train/<class>/*, PATH/test/<class>/*)")
    print("  npz:PATH      arrays x_train, y_train, x_test, y_test in an .npz file")
    return 0


def check_output_file(path: str, flag: str) -> Path:
    """An output file that can be written: not a folder, in an existing writable folder (checked before
    any work, so that nothing computed is lost to a bad path)."""
    if not path or not path.strip():
        raise ValueError(f"{flag} is empty; give a file name, e.g. {flag} results.csv")
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{flag} {path!r} is a folder; give a file name inside it, e.g. {p / 'results.csv'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise ValueError(f"{flag} {path!r}: the folder {str(parent)!r} does not exist; create it first")
    if not parent.is_dir():
        raise ValueError(f"{flag} {path!r}: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ValueError(f"{flag} {path!r} cannot be written (no permission); choose another file")
    if p.exists() and not p.is_file():
        raise ValueError(f"{flag} {path!r} is not a regular file; choose another file")
    try:  # the write itself goes through a temporary file in that folder: make sure one can be made there
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".tmp-"):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {path!r} cannot be written ({e.strerror or e}); choose another folder") from None
    return p


def _spec_from_args(args: argparse.Namespace) -> EvalSpec:
    """The spec of ``--spec FILE`` or of the flags (derived from the spec's declared fields). With a file,
    only the fields that change no number (device, batch size, downloads) may be given as flags too."""
    given = namespace_values(args, EvalSpec)
    if args.spec is not None:
        runtime = {d.key for d in declared(EvalSpec) if not d.option.digest}
        clash = sorted(k for k in given if k not in runtime)
        if clash:
            by_key = {d.key: d.flag for d in declared(EvalSpec)}
            flags = ", ".join(by_key.get(k, "--" + k) for k in clash)
            raise ValueError(f"give either --spec FILE or the flags that build a spec ({flags}), not both; "
                             f"write every setting into the spec file")
        spec = load_spec(args.spec)
        return spec.with_(**given) if given else spec
    missing = [d.flag for d in declared(EvalSpec) if d.option.required and d.key not in given]
    if missing:
        raise ValueError(f"evaluate needs {', '.join(missing)} (or --spec FILE)")
    return EvalSpec.from_dict(given)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    outputs = [(p, f) for p, f in ((args.out, "--out"), (args.samples_out, "--samples-out"),
                                   (args.save_spec, "--save-spec"), (args.latex, "--latex")) if p is not None]
    paths = [check_output_file(p, f) for p, f in outputs]
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"{', '.join(f for _, f in outputs)} name the same file; give each output its own file")
    if args.save_spec:
        text = spec.to_json() if args.save_spec.lower().endswith(".json") else spec.to_toml()
        atomic_write(args.save_spec, text.encode())
    ex = Executor(spec, cache_dir=args.cache_dir, use_cache=not args.no_cache and not args.dry_run)
    units = plan(spec)
    est = estimate(units, lambda u: ex.backbone(), lambda u: ex.task(u.task))
    if args.dry_run:
        print(json.dumps(est.to_dict()))
        return 0
    _log_lines(estimate_lines(est))
    ev = execute(spec, units=units, executor=ex, progress=Progress())
    if ev.recomputed:
        _log_lines([f"note: {len(ev.recomputed)} cache entries failed verification and were recomputed:",
                    *(f"  {line}" for line in ev.recomputed)], logging.WARNING)
    shown = ev.summary[SUMMARY_COLUMNS].assign(eps=ev.summary["eps"].map(lambda e: str(eps_text(e))))
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if spec.sanity:
        print("\n".join(sanity_lines(ev.sanity)))
    for path, df in ((args.out, ev.summary), (args.samples_out, ev.samples)):
        if path:
            _write_csv(df, path)
    if args.latex:
        atomic_write(args.latex, latex_table(ev.summary).encode())
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """A RobustBench-style, DataParallel or plain checkpoint as a safetensors file of the backbone's weights."""
    from ..models.convert import convert_checkpoint

    check_output_file(args.dst, "OUT")
    report = convert_checkpoint(args.src, args.dst, args.backbone, key=args.key)
    print(json.dumps(report.to_dict(), indent=2))
    if report.mean is not None:
        log.warning(f"the checkpoint normalises its inputs: give the backbone mean = {list(report.mean)} and "
                    f"std = {list(report.std or ())} (--mean / --std, or in the spec file)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train bundled backbones from their recipes; one JSON line per backbone (its card's headline numbers)."""
    from ..train import RECIPES, run_recipe

    for name in list(RECIPES) if args.recipes == ["all"] else args.recipes:
        card = run_recipe(name, args.out, args.epochs,
                          report=lambda m, n=name: log.info(f"[{n}] {m}"))
        print(json.dumps({k: card[k] for k in ("name", "wall_time_s", "upstream_clean_acc", "upstream_robust_acc")}))
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    """A summary CSV (of evaluate or a sweep) as a LaTeX table."""
    src = Path(args.summary).expanduser()
    if not src.is_file():
        raise ValueError(f"{args.summary!r} is not a file; give the summary CSV of `evaluate --out` or a sweep's "
                         f"summary.csv")
    if src.stat().st_size > MAX_TABLE_BYTES:
        raise ValueError(f"{args.summary!r} has {src.stat().st_size / 1e6:.0f} MB; a summary table is far smaller "
                         f"(at most {MAX_TABLE_BYTES / 1e6:.0f} MB read): give the summary, not the per-sample table")
    try:
        summary = pd.read_csv(src)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{args.summary!r} is not a CSV table ({e})") from None
    text = latex_table(summary)
    if args.out:
        check_output_file(args.out, "--out")
        atomic_write(args.out, text.encode())
    else:
        print(text, end="")
    return 0


def _write_csv(df: pd.DataFrame, path: str) -> None:
    try:
        atomic_write(path, csv_bytes(df))
    except OSError as e:
        raise ValueError(f"could not write {path!r} ({e}); the table above is the result") from None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ..runs.sweep import sweep, sweeps_dir
    from ..runs.sweep_spec import slug

    spec = load_sweep_spec(args.spec, args.max_units)
    if args.cache_dir is not None:
        resolve_cache_dir(args.cache_dir)  # a bad folder is refused before any backbone is loaded
    est = estimate_specs([u.spec for u in spec.units], cache_dir=args.cache_dir,
                         use_cache=not args.no_cache and not args.dry_run)
    if args.dry_run:
        print(json.dumps(est.to_dict()))
        return 0
    _log_lines(estimate_lines(est))
    out = args.out or sweeps_dir(args.cache_dir) / slug(Path(args.spec).stem, 80)
    result = sweep(spec, out, engine=args.engine, address=args.address, workers=args.workers,
                   cache_dir=args.cache_dir, use_cache=not args.no_cache, retries=args.retries,
                   samples_format=args.samples_format, progress=SweepPrinter(), max_units=args.max_units)
    if result.rejected:
        _log_lines([f"note: {len(result.rejected)} stored units failed verification and were recomputed:",
                    *(f"  {uid}: {why}" for uid, why in result.rejected)], logging.WARNING)
    if result.recomputed_cache:
        log.warning(f"note: {len(result.recomputed_cache)} cache entries failed verification and were recomputed")
    print(f"{len(result.summary)} summary rows ({result.total - len(result.failed)} of {result.total} units) in "
          f"{result.out_dir / 'summary.csv'}; per-sample rows in {result.samples_path or '(none)'}")
    if result.failed:
        _log_lines([f"{len(result.failed)} units failed (details in {result.out_dir / 'failures.csv'}); run the "
                    "same command again to retry them:",
                    *(f"  {row.unit}: {row.error_type}: {row.error}"
                      + (" (unexpected: the traceback is in failures.csv)" if row.traceback else "")
                      for row in result.failures.itertuples(index=False))], logging.ERROR)
    return result.exit_code


def _budget_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(CLI_FLAG, dest="max_input_gb", type=float, metavar="GB",
                   help=f"the most memory one input (a task's images, a checkpoint) may take once decoded, in GB "
                        f"(default {DEFAULT_MAX_INPUT_BYTES / 1e9:g}, or ${ENV_MAX_INPUT_GB}); larger inputs are refused "
                        f"before they are read")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rtcore", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list backbones and tasks").set_defaults(fn=_cmd_list)
    e = sub.add_parser("evaluate", help="bound vs empirical robust accuracy per task and eps")
    e.add_argument("--spec", help="a spec file (.toml or .json) with every setting; instead of the flags below")
    add_arguments(e, EvalSpec)
    _budget_flag(e)
    e.add_argument("--dry-run", action="store_true",
                   help="check everything, print the plan's size and time estimate as JSON, compute nothing")
    e.add_argument("--out", help="summary CSV")
    e.add_argument("--samples-out", help="per-sample CSV")
    e.add_argument("--latex", help="also write the summary as a LaTeX table (booktabs)")
    e.add_argument("--save-spec", help="also write the spec (.toml or .json) that reproduces this run")
    e.add_argument("--cache-dir", help="result cache (default $RTCORE_CACHE_DIR or ~/.cache/rtcore)")
    e.add_argument("--no-cache", action="store_true", help="compute everything and write nothing to disk")
    e.set_defaults(fn=_cmd_evaluate)
    c = sub.add_parser("convert", help="a checkpoint (RobustBench-style, DataParallel, nested state_dict) as the "
                                       "safetensors weights of a backbone, checked to load strictly")
    c.add_argument("src", help="the checkpoint (.pt/.pth read with torch.load(weights_only=True), or .safetensors)")
    c.add_argument("dst", metavar="OUT", help="the .safetensors file to write")
    c.add_argument("--backbone", required=True, help="the architecture: a registry name, timm:<model> or "
                                                     "torchvision:<model>")
    c.add_argument("--key", help="where the state dict sits in the checkpoint (dotted, e.g. ema.model) when it "
                                 "is not found on its own")
    c.set_defaults(fn=_cmd_convert)
    from ..models import BUNDLED_DIR
    from ..train import RECIPES

    r = sub.add_parser("train", help="train bundled backbones from their recipes")
    r.add_argument("recipes", nargs="+", help=f"recipe names ({', '.join(RECIPES)}) or 'all'")
    r.add_argument("--out", type=Path, default=BUNDLED_DIR, help="output folder (default: assets/backbones)")
    r.add_argument("--epochs", type=int, help="override the recipe's epochs")
    r.set_defaults(fn=_cmd_train)
    t = sub.add_parser("table", help="a summary CSV (of evaluate --out or a sweep) as a LaTeX table")
    t.add_argument("summary", help="the summary CSV")
    t.add_argument("--out", help="the .tex file (default: print it)")
    t.set_defaults(fn=_cmd_table)
    w = sub.add_parser("sweep", help="a sweep across backbones, tasks, probes and transfer methods (local or Ray)",
                       description="Run every unit of a sweep file; units already stored in --out are reused. "
                                   "Exit code 0: all done; 1: some units failed (see failures.csv); 2: bad input.")
    w.add_argument("spec", help="the sweep file (.toml or .json): backbones, tasks, eps, norm, n, attack, probes, "
                                "transfers, seed (lists where the sweep varies them)")
    w.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default): one unit at a time in this process; ray: one Ray task per unit")
    w.add_argument("--address", help="ray only: 'auto' or 'ray://host:10001' joins a cluster (default: start a "
                                     "local instance)")
    w.add_argument("--workers", type=int, help="ray only: CPUs of the local instance, one unit each (default: "
                                               "all cores)")
    w.add_argument("--out", help="output folder (default <cache>/sweeps/<spec file name>)")
    w.add_argument("--retries", type=int, default=2, help="extra attempts for a unit that ran out of memory "
                                                          "(default 2)")
    w.add_argument("--samples-format", choices=["csv", "parquet"], default="csv",
                   help="the per-sample table's format (parquet needs pyarrow)")
    w.add_argument("--cache-dir", help="result cache (default $RTCORE_CACHE_DIR or ~/.cache/rtcore); on a cluster, "
                                       "a folder every node sees")
    w.add_argument("--no-cache", action="store_true", help="no result cache (units share nothing)")
    _budget_flag(w)
    w.add_argument("--dry-run", action="store_true",
                   help="check the file, print the units, image-steps and time estimate as JSON, compute nothing")
    w.add_argument("--max-units", type=int, default=MAX_UNITS,
                   help=f"refuse a sweep that expands to more units than this (default {MAX_UNITS})")
    w.set_defaults(fn=_cmd_sweep)
    return p


def _log_lines(lines: Sequence[str], level: int = logging.INFO) -> None:
    for line in lines:
        log.log(level, line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command: its results on stdout, its progress, notes and errors on stderr (the ``rtcore.cli``
    logger, shown by :func:`~rtcore.cli.report.console` while it runs)."""
    args = build_parser().parse_args(argv)
    with console():
        try:
            if getattr(args, "max_input_gb", None) is not None:  # every reader of this process (and its workers)
                os.environ[ENV_MAX_INPUT_GB] = repr(check_max_input_bytes(args.max_input_gb * 1e9, CLI_FLAG) / 1e9)
            return int(args.fn(args))
        except (ValueError, RtcoreError) as e:
            log.error(f"\nerror: {e}")
            return 2
        except KeyboardInterrupt:
            log.error("\ninterrupted: every finished step is in the cache; run the same command to continue")
            return 130
