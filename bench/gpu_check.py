"""GPU readiness benchmark: three timed runs on one device, written as a markdown table (and JSON).

Rows (each on a fresh, empty cache, so every number is a cold computation):

* **dashboard grid**: the dashboard's default request (``rtcore.runs.selection``: its default backbone, the offline
  tasks, the linf eps grid, n = 200, its default strength and probe), as ``rtcore.evaluate``;
* **strong vs AutoAttack**: ``bench/strength.py`` with the contenders ``strong`` and ``AA custom``
  (APGD-CE + APGD-T) on fmnist-cnn-standard / fmnist-novel, n = 64, eps 8/255: each one's seconds and
  robust accuracy, and AutoAttack's time over strong's;
* **ResNet-50 unit**: timm's resnet50 at 224 px (random weights: a GPU machine has no network), fmnist-novel
  (28 px images, upsampled inside the backbone), n = 64, eps 2/255, ``standard``: seconds and seconds per point.

The table is rewritten after every row, so a run stopped by a time limit keeps what it measured.
``--smoke`` runs the same code at tiny sizes (for a CPU check of the script itself; its figures mean
nothing). Run from the repository root (scripts/gpu_check.sh does)::

    python -m bench.gpu_check --device cuda --out bench/out
    python -m bench.gpu_check --device cpu --smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import rtcore
from rtcore.config import eps_grid
from rtcore.models.ref import BackboneRef
from rtcore.runs import selection

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    check: str
    setting: str
    seconds: float | None = None
    result: str = ""


def environment(device: str) -> str:
    """One line: the device, torch and CUDA versions, the commit."""
    dev = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else platform.processor() \
        or platform.machine()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return (f"device {device} ({dev}); torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}; rtcore "
            f"{commit}; {time.strftime('%Y-%m-%d %H:%M')}")


def _timed(fn: Callable[[], str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, result


def dashboard_grid(device: str, smoke: bool) -> Row:
    d = selection.defaults()
    backbone, tasks, n, norm, attack, probe = d["backbone"], d["tasks"], d["n"], d["norm"], d["attack"], d["probe"]
    if smoke:
        tasks, n = tasks[:1], 8
    eps = eps_grid(norm)

    def run() -> str:
        with tempfile.TemporaryDirectory() as cache:
            df = rtcore.evaluate(backbone, tasks, eps, norm, n, attack=attack, probe=probe, device=device,
                                 cache_dir=cache)
        top = df[df["eps"] == df["eps"].max()]
        return f"{len(df)} rows; mean robust acc at eps {eps[-1]:.4g}: {top['robust_acc'].mean():.3f}"

    seconds, result = _timed(run)
    return Row("dashboard grid", f"{backbone} x {len(tasks)} tasks x {len(eps)} eps ({norm}), n={n}, {attack}, "
                                 f"{probe}", seconds, result)


def strong_vs_autoattack(device: str, smoke: bool, out: Path) -> Row:
    from bench import strength

    n = 8 if smoke else 64
    args = ["--contenders", "strong", "AA custom", "--backbones", "fmnist-cnn-standard", "--tasks", "fmnist-novel",
            "--eps", "8/255", "--n", str(n), "--chunks", "1", "--device", device, "--out", str(out / "strength")]
    t0 = time.perf_counter()
    strength.main(args)
    wall = time.perf_counter() - t0
    setting = json.loads((out / "strength" / "strength.json").read_text())["settings"][0]
    times = {k: v["wall"] for k, v in setting["times"].items()}
    ra = {k: sum(flags[0]) / len(flags[0]) for k, flags in setting["robust"].items()}  # flags: robust per (eps, point)
    parts = [f"{k}: {times[k]:.1f} s, robust acc {ra[k]:.3f}" for k in times]
    ratio = times["AA custom"] / times["strong"] if times.get("strong") else float("nan")
    return Row("strong vs AutoAttack", f"fmnist-cnn-standard / fmnist-novel, n={n}, eps 8/255", wall,
               f"{'; '.join(parts)}; AutoAttack / strong time: {ratio:.2f}x")


def resnet50_unit(device: str, smoke: bool) -> Row:
    n, attack = (2, "fast") if smoke else (64, "standard")
    ref = BackboneRef("timm:resnet50", pretrained=False, input_size=16 if smoke else None)

    def run() -> str:
        with tempfile.TemporaryDirectory() as cache:
            df = rtcore.evaluate(ref, "fmnist-novel", 2 / 255, "linf", n, attack=attack, probe="logistic",
                                 device=device, cache_dir=cache)
        return f"clean {df['clean_acc'].iloc[0]:.3f}, robust {df['robust_acc'].iloc[0]:.3f} (random weights)"

    seconds, result = _timed(run)
    size = "16 px (smoke)" if smoke else "224 px"
    return Row("ResNet-50 unit", f"timm resnet50 at {size}, fmnist-novel, n={n}, eps 2/255, {attack}", seconds,
               f"{result}; {seconds / n:.2f} s per point")


def table(rows: Sequence[Row], env: str, tests: str) -> str:
    lines = [f"# GPU check\n\n{env}\n\nCUDA tests (`pytest -m cuda`): {tests or 'not run'}\n",
             "| check | setting | seconds | result |", "|---|---|---:|---|"]
    for r in rows:
        secs = "" if r.seconds is None else f"{r.seconds:.1f}"
        lines.append(f"| {r.check} | {r.setting} | {secs} | {r.result} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, not the machine")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    p.add_argument("--tests", default="", help="the CUDA tests' summary line, for the report")
    a = p.parse_args(argv)
    rtcore.models.resolve_device(a.device)  # a clear error before any work
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(a.device)
    checks: list[tuple[str, Callable[[], Row]]] = [
        ("dashboard grid", lambda: dashboard_grid(a.device, a.smoke)),
        ("strong vs AutoAttack", lambda: strong_vs_autoattack(a.device, a.smoke, out)),
        ("ResNet-50 unit", lambda: resnet50_unit(a.device, a.smoke))]
    rows: list[Row] = []
    failed = False
    for name, check in checks:
        try:
            rows.append(check())
        except Exception as e:  # noqa: BLE001 - one failed row must not hide the others
            failed = True
            first = str(e).splitlines()[0][:300] if str(e) else ""
            rows.append(Row(name, "", None, f"FAILED: {type(e).__name__}: {first}"))
            traceback.print_exc()
        (out / "gpu_check.md").write_text(table(rows, env, a.tests))
        (out / "gpu_check.json").write_text(json.dumps({"environment": env, "tests": a.tests,
                                                        "rows": [asdict(r) for r in rows]}, indent=1))
    print(table(rows, env, a.tests))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
