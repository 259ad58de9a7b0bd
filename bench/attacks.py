"""Benchmark rtcore's PGD engine against torchattacks, foolbox and AutoAttack on one model, one input set.

Run from the repository root (peers are *not* runtime dependencies of rtcore)::

    python -m venv .venv-bench
    .venv-bench/bin/pip install -r requirements.txt -r bench/requirements.txt
    .venv-bench/bin/python bench/attacks.py            # --n 512 --reps 3 --device auto
    .venv-bench/bin/python bench/attacks.py --quick    # smoke test: tiny n, 1 repetition

Every section runs its contenders in one process on the same model object, the same
images, the same eps and the same number of steps, interleaved (A B C A B C ...), after one
untimed warm-up call each; the tables report medians. Every contender's returned images are
checked (inside the eps-ball, inside [0, 1]) and robust accuracy / Delta is recomputed here
from those images with the same model, never taken from a library's own success flag.

Sections (see bench/README.md for what each row means):

1. ``single``  end-to-end linf PGD, eps 0.1, 20 steps, 1 restart (AutoAttack: APGD-CE, 20 iterations)
2. ``sweep``   the same over 5 eps: rtcore's one-call sweep, foolbox's ``epsilons=[...]``,
               a torchattacks loop, an APGD-CE loop
3. ``feature`` the feature attack max ||g(x')-g(x)||_2 (20 steps) vs the same loss in foolbox
4. ``tasks``   the bound for K = 1..5 tasks sharing inputs vs K end-to-end attacks
5. ``flops``   achieved model FLOP/s as a fraction of the measured float32 matmul peak
6. ``sanity``  rtcore.sanity's flags for rtcore's own runs (not timed)
7. ``rows``    the 'fast' strength at the peers' steps against the PGD peers on more models of bench/rows.py
               (the ResNet-18, a 224-pixel ResNet-50; ``--rows``, eps ``--rows-eps``)

Targets include: 'fast' with the peers' number of steps at least 5x faster than every PGD peer
(torchattacks, foolbox, adv-lib where installed) and at least as strong, in section 1 and on every row.

rtcore runs as it is (its iterations on a verified fused copy of the model); the "rtcore, unfused"
rows are the same calls with ``AttackSettings(fuse=False)``, and a "on GPU (cuda)" row is added
when CUDA is present while the main rows run on the CPU.

Writes ``bench/out/results.json`` and ``bench/out/results.md`` (``--out`` to change), plus a
profile of one call each (torch.profiler, inclusive time per line of the PGD loop
``rtcore/attacks/pool.py``, cProfile) unless ``--no-profile``.

Modules: ``bench/harness.py`` (timing, checks, FLOPs, profilers), ``bench/peers.py`` (torchattacks,
foolbox, pyautoattack), ``bench/sections.py`` (the shared context and the timed sections),
``bench/sanity_section.py`` (the sanity flags), ``bench/report.py`` (tables, targets, output files).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "bench"):  # `python bench/attacks.py` from anywhere; the modules next to this one
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from harness import log, machine_info, pick_device
from report import BenchResult, Config, write_report
from sanity_section import section_sanity
from sections import (
    Context,
    make_context,
    section_feature,
    section_flops,
    section_profile,
    section_rows,
    section_single,
    section_sweep,
    section_tasks,
)

DEFAULT_BACKBONE = "fmnist-cnn-pgd-linf-0.1"
DEFAULT_TASK = "fmnist-novel"
T = TypeVar("T")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--n", type=int, default=512, help="test images (default 512)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per contender (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: n=8, reps=1, 3 steps, K=2 tasks, 200 train images, small matmul")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"registry name, or 'random' (default {DEFAULT_BACKBONE})")
    p.add_argument("--task", default=DEFAULT_TASK)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all logical cores)")
    p.add_argument("--train-n", type=int, default=None, help="train images for the probes (default: all)")
    p.add_argument("--tasks", type=int, default=5, help="K max for the shared-inputs section (1..5)")
    p.add_argument("--sections", default="single,sweep,feature,tasks,sanity,rows", help="comma list")
    p.add_argument("--rows", nargs="*", default=None,
                   help="rows of bench/rows.py for the rows section (default: the ResNet-18 and the 224-pixel "
                        "ResNet-50; none with --quick)")
    p.add_argument("--rows-eps", default="2/255", help="eps of the rows section (value or k/255)")
    p.add_argument("--rows-n", type=int, default=None, help="test points per row (default: the row's)")
    p.add_argument("--rows-reps", type=int, default=1, help="timed repetitions per contender on the rows")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-unfused", action="store_true",
                   help="skip the rows that time rtcore with AttackSettings(fuse=False)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"), help="folder for results.json and results.md")
    a = p.parse_args(argv)
    if a.quick:  # a smoke test of every code path, not a measurement
        a.n, a.reps, a.steps, a.tasks = min(a.n, 8), 1, min(a.steps, 3), min(a.tasks, 2)
        a.train_n = a.train_n or 200
    if a.rows is None:
        a.rows = [] if a.quick else ["resnet18", "resnet50-224"]
    return a


def run_section(name: str, section: Callable[[Context], T], ctx: Context) -> T:
    log(f"[{name}]")
    t0 = time.perf_counter()
    result = section(ctx)
    log(f"  {name} done in {time.perf_counter() - t0:.1f} s")
    return result


def main(argv: Sequence[str] | None = None) -> BenchResult:
    a = parse_args(argv)
    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = pick_device(a.device)
    log(f"setting up: backbone {a.backbone}, task {a.task}, n={a.n}, reps={a.reps}, device {device}, threads {threads}")
    ctx = make_context(a.backbone, a.task, a.n, device, eps=a.eps, steps=a.steps, reps=a.reps, quick=a.quick,
                       train_n=a.train_n, tasks=a.tasks, unfused=not a.no_unfused)
    res = BenchResult(
        config=Config(backbone=a.backbone, task=a.task, n=a.n, reps=a.reps, eps=a.eps, steps=a.steps,
                      train_n=ctx.train_n, quick=a.quick, threads=threads),
        machine=machine_info(device, threads), clean_acc=ctx.clean_acc, fuse=vars(ctx.fuse_report),
    )
    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    if "single" in sections:
        res.single = run_section("single", section_single, ctx)
    if "sweep" in sections:
        res.sweep = run_section("sweep", section_sweep, ctx)
    if "feature" in sections:
        res.feature = run_section("feature", section_feature, ctx)
    if "tasks" in sections:
        res.tasks = run_section("tasks", section_tasks, ctx)
    if "sanity" in sections:
        res.sanity = run_section("sanity", section_sanity, ctx)
    if "rows" in sections and a.rows:
        e = float(a.rows_eps.split("/")[0]) / float(a.rows_eps.split("/")[1]) if "/" in a.rows_eps else float(a.rows_eps)
        res.rows = section_rows(a.rows, device, eps=e, steps=a.steps, reps=a.rows_reps, n=a.rows_n)
    log("[flops]")
    res.flops = section_flops(ctx)
    if not a.no_profile:
        log("[profile]")
        res.profile = section_profile(ctx)
    if res.complete():
        out = Path(a.out)
        md = write_report(res, out)
        print(md)
        log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return res


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
