#!/usr/bin/env python3
"""Measure sweeps: serial (``--engine local``) against Ray with several workers, Ray's overhead per unit,
and the extrapolation to a larger zoo.

The sweep: the five bundled backbones x the five offline tasks x eps 1, 2, 4, 8/255, the ``fast``
attack, the default probe (25 units). Every configuration runs in a fresh process on a fresh, empty
result cache (nothing is reused between configurations), one after another:

* ``tiny-local`` / ``tiny-ray``: the same sweep with n = 8 (``--tiny-n``): almost no attack work, so
  the difference is the engine's overhead;
* ``serial-1t``: the local engine with torch on one thread (the per-unit cost one worker pays);
* ``ray``: Ray with ``--workers`` workers of one CPU each;
* ``serial-2t``: the local engine with torch on two threads (what one process gets from two cores).

For each run: wall time, the measured seconds of every unit, Ray's start-up time, the per-unit
overhead (seconds from submission to receipt minus the unit's own seconds), and the machine's load
average sampled every 5 s (the cores are shared: other processes' load is part of the figures).
Writes ``OUT/results.json`` and ``OUT/results.md`` and prints the table.

    python scripts/sweep_bench.py [--n 200] [--workers 2] [--tiny-n 8] [--out bench/out/sweep]
        [--only tiny-local,tiny-ray,serial-1t,ray,serial-2t] [--zoo 40]
    python scripts/sweep_bench.py --report OUT/results.json      # the tables of an earlier run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ["fmnist-cnn-pgd-l2-1.0", "fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-simclr", "fmnist-cnn-standard",
             "fmnist-timm-resnet-standard"]
TASKS = ["fmnist-novel", "fmnist-seen", "fmnist-torso", "shapes", "glyphs"]
EPS = ["1/255", "2/255", "4/255", "8/255"]
CONFIGS = ("tiny-local", "tiny-ray", "serial-1t", "ray", "serial-2t")

#: run in a fresh interpreter: one sweep, its statistics as JSON on the last line of stdout
RUNNER = """
import json, sys, time
t0 = time.perf_counter()
from rtcore.runs.sweep import sweep
spec, out, cache, engine, workers = json.loads(sys.argv[1])
res = sweep(spec, out, engine=engine, workers=workers, cache_dir=cache)
print(json.dumps({"wall_in_process": time.perf_counter() - t0, "sweep_wall": res.wall_seconds,
                  "init_seconds": res.init_seconds, "unit_seconds": res.unit_seconds, "latency": res.latency,
                  "failed": res.failed, "engine_info": res.engine_info, "units": res.total}))
"""


def spec(n: int) -> dict[str, Any]:
    return {"backbones": BACKBONES, "tasks": TASKS, "eps": EPS, "n": n, "attack": "fast"}


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while a run lasts."""

    def __init__(self, every: float = 5.0) -> None:
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_config(name: str, n: int, tiny_n: int, workers: int, root: Path) -> dict[str, Any]:
    """One configuration in a fresh process and a fresh cache; its statistics."""
    engine = "ray" if name in ("ray", "tiny-ray") else "local"
    threads = {"serial-2t": 2}.get(name, 1)
    size = tiny_n if name.startswith("tiny") else n
    cache, out = root / name / "cache", root / name / "out"
    args = json.dumps([spec(size), str(out), str(cache), engine, workers if engine == "ray" else None])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(f"[{time.strftime('%H:%M:%S')}] {name}: n = {size}, engine {engine}, "
          f"{workers if engine == 'ray' else 1} worker(s) x {threads} thread(s) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with LoadSampler() as load:
        proc = subprocess.run([sys.executable, "-c", RUNNER, args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    secs = list(stats["unit_seconds"].values())
    overhead = [stats["latency"][u] - stats["unit_seconds"][u] for u in stats["unit_seconds"]]
    row = {"config": name, "engine": engine, "n": size, "workers": workers if engine == "ray" else 1,
           "threads": threads, "wall": wall, "units": stats["units"], "failed": stats["failed"],
           "unit_sum": sum(secs), "unit_mean": statistics.fmean(secs), "unit_median": statistics.median(secs),
           "init": stats["init_seconds"], "overhead_mean": statistics.fmean(overhead),
           "overhead_median": statistics.median(overhead), "overhead_max": max(overhead),
           "load_mean": statistics.fmean(load.samples), "load_max": max(load.samples),
           "engine_info": stats["engine_info"]}
    print(f"    wall {wall:.0f} s, units {row['unit_sum']:.0f} s in all (mean {row['unit_mean']:.1f} s), "
          f"load {row['load_mean']:.1f}", file=sys.stderr, flush=True)
    return row


def report(rows: dict[str, dict[str, Any]], zoo: int, workers: int) -> str:
    """The markdown tables: the runs, then scaling, overhead and the extrapolation."""
    lines = ["| run | engine | n | workers x threads | wall | sum of unit seconds | mean unit | Ray start | "
             "overhead per unit (mean / median / max) | load avg (mean / max) |",
             "|---|---|---:|---|---:|---:|---:|---:|---|---|"]
    for r in rows.values():
        ray = r["engine"] == "ray"
        lines.append(f"| {r['config']} | {r['engine']} | {r['n']} | {r['workers']} x {r['threads']} | "
                     f"{r['wall']:.0f} s | {r['unit_sum']:.0f} s | {r['unit_mean']:.1f} s | "
                     f"{r['init']:.1f} s | {r['overhead_mean']:.2f} / {r['overhead_median']:.2f} / "
                     f"{r['overhead_max']:.1f} s{'' if ray else ' (in-process)'} | "
                     f"{r['load_mean']:.1f} / {r['load_max']:.1f} |")
    out = ["\n".join(lines), ""]
    s1, ray, s2 = rows.get("serial-1t"), rows.get("ray"), rows.get("serial-2t")
    if s1 and ray:
        speed = s1["wall"] / ray["wall"]
        out.append(f"* Scaling: serial (1 thread) {s1['wall']:.0f} s, Ray with {workers} workers {ray['wall']:.0f} s: "
                   f"speed-up {speed:.2f}, efficiency {speed / workers:.0%}"
                   + (f"; serial with 2 threads {s2['wall']:.0f} s (Ray is {s2['wall'] / ray['wall']:.2f}x faster)"
                      if s2 else "") + ".")
        per_unit = s1["unit_mean"]  # a unit with a core to itself
        over = ray["overhead_median"]
        units = zoo * len(TASKS)
        out.append(f"* Extrapolation to {zoo} backbones of this size ({units} units, same tasks and eps): one worker "
                   f"{units * s1['unit_mean'] / 3600:.1f} h; this machine with Ray ({workers} workers) about "
                   f"{units * s1['unit_mean'] / speed / 3600:.1f} h; W one-CPU workers on a cluster about "
                   f"{units} x ({per_unit:.0f} s + {over:.2f} s) / W + {ray['init']:.0f} s "
                   f"(W = 64: {(units * (per_unit + over) / 64 + ray['init']) / 60:.0f} min), while every unit "
                   f"stays a whole (backbone, task, probe) over the eps grid.")
    tl, tr = rows.get("tiny-local"), rows.get("tiny-ray")
    if tl and tr:
        out.append(f"* Tiny n = {tl['n']}: local {tl['wall']:.0f} s (units {tl['unit_mean']:.1f} s each), Ray "
                   f"{tr['wall']:.0f} s with {tr['init']:.1f} s to start; Ray's overhead per unit: median "
                   f"{tr['overhead_median']:.2f} s, mean {tr['overhead_mean']:.2f} s (the first unit of each worker "
                   f"also imports torch and rtcore: max {tr['overhead_max']:.1f} s).")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="test points per task (default 200)")
    p.add_argument("--tiny-n", type=int, default=8, help="test points of the overhead runs (default 8)")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    p.add_argument("--zoo", type=int, default=40, help="backbones of the extrapolation (default 40)")
    p.add_argument("--only", default=",".join(CONFIGS), help=f"configurations, comma-separated ({','.join(CONFIGS)})")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "sweep"), help="where results.json/.md go")
    p.add_argument("--report", metavar="JSON", help="only print the tables of an earlier results.json")
    args = p.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())["runs"], args.zoo, args.workers))
        return
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    bad = [c for c in only if c not in CONFIGS]
    if bad:
        raise SystemExit(f"unknown configurations {bad}; choose from {list(CONFIGS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "load_before": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        for name in [c for c in CONFIGS if c in only]:
            rows[name] = run_config(name, args.n, args.tiny_n, args.workers, Path(tmp))
            (out / "results.json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=1))
    text = report(rows, args.zoo, args.workers)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
