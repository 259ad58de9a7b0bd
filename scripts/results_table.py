"""Generate the README results tables with the CLI: every bundled backbone on every offline task.

    python scripts/results_table.py --n 500 --attack fast      # the README table: default probe, linf k/255 grid
    python scripts/results_table.py --n 500 --attack fast --probes logistic robust \
        --backbones fmnist-cnn-pgd-linf-0.1 fmnist-cnn-standard --out tradeoff.md   # the README trade-off

Each (backbone, probe) is one `python -m rtcore evaluate` run (cached, resumable: a killed run
picks up from the cache); its CSV goes to results/<backbone>[-<probe>].csv and the markdown to
results/table.md (results/compact-table.md: one row per backbone and task). Every row is checked
for the relations that must hold (bound <= bound_head <= robust_acc <= clean_acc;
clean_loss <= adv_loss <= loss_bound_lse <= loss_bound), and the script prints whether the linf-robust backbone's bound says something at 2/255.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

import rtcore
from rtcore.config import eps_steps

GRID_255 = (1, 2, 4, 8)
ROBUST, STANDARD = "fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"


def run_cli(backbone: str, tasks: list[str], eps: list[float], n: int, attack: str, probe: str, out: Path) -> None:
    cmd = rtcore.cli_command(backbone, tasks, eps, "linf", n, attack=attack, out=str(out), probe=probe)
    print(f"$ {cmd}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, *cmd.split()[1:]], check=True, cwd=ROOT)


def check_relations(df: pd.DataFrame) -> None:
    tol = 1e-9
    pairs = [("bound", "bound_head"), ("bound_head", "robust_acc"), ("robust_acc", "clean_acc"),
             ("clean_loss", "adv_loss"), ("adv_loss", "loss_bound_lse"), ("loss_bound_lse", "loss_bound")]
    for lo, hi in pairs:
        bad = df[df[lo] > df[hi] + tol]
        if len(bad):
            raise SystemExit(f"relation {lo} <= {hi} fails on {len(bad)} rows:\n{bad}")


def markdown(df: pd.DataFrame) -> str:
    head = ("| backbone | task | probe | eps | clean acc | robust acc | bound | bound (head) | bound (mean Δ) "
            "| mean Δ | adv loss | LSE loss bound | loss bound |")
    lines = [head, "|" + "---|" * 4 + "---:|" * 9]
    for _, r in df.iterrows():
        lines.append(
            f"| {r.backbone} | {r.task} | {r.probe} | {eps_steps(r.eps, 'linf'):.0f}/255 | {r.clean_acc:.3f} "
            f"| {r.robust_acc:.3f} | {r.bound:.3f} | {r.bound_head:.3f} | {r.bound_mean_delta:.3f} "
            f"| {r.mean_delta:.3f} | {r.adv_loss:.3f} | {r.loss_bound_lse:.3f} | {r.loss_bound:.3f} |")
    return "\n".join(lines)


def compact(df: pd.DataFrame) -> str:
    """One row per (backbone, task, probe): clean accuracy, then per eps ``robust / bound / bound (head)``."""
    ks = sorted({round(e * 255) for e in df.eps})
    cols = " | ".join(f"{k}/255: robust / bound / bound (head)" for k in ks)
    lines = [f"| backbone | task | probe | clean | {cols} |",
             "|---|---|---|---:|" + "---:|" * len(ks)]
    for (bb, task, probe), g in df.groupby(["backbone", "task", "probe"], sort=False):
        by_k = {round(r.eps * 255): r for _, r in g.iterrows()}
        cells = [f"{by_k[k].robust_acc:.3f} / {by_k[k].bound:.3f} / {by_k[k].bound_head:.3f}" if k in by_k else ""
                 for k in ks]
        lines.append(f"| {bb} | {task} | {probe} | {g.clean_acc.iloc[0]:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def done_when(df: pd.DataFrame) -> list[str]:
    """The bound says something: the linf-robust backbone at 2/255 with the default probe."""
    at = df[(df.probe == "logistic") & (abs(df.eps - 2 / 255) < 1e-9)].set_index(["backbone", "task"])
    if ROBUST not in at.index.get_level_values(0):
        return []
    rob = at.loc[ROBUST]
    half = int((rob["bound"] >= 0.5 * rob["robust_acc"]).sum())
    out = [f"{ROBUST} at 2/255: bound >= half its robust accuracy on {half} of {len(rob)} tasks"]
    if STANDARD in at.index.get_level_values(0):
        std = at.loc[STANDARD].reindex(rob.index)
        beats = int((rob["bound"] > std["bound"]).sum())
        out.append(f"{ROBUST} bound > {STANDARD} bound on {beats} of {len(rob)} tasks")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", nargs="+", type=int, default=list(GRID_255), help="eps = k/255 for these k")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--attack", default="standard")
    p.add_argument("--probes", nargs="+", default=["logistic"])
    p.add_argument("--backbones", nargs="*", help="default: every bundled backbone")
    p.add_argument("--out", default="table.md")
    args = p.parse_args()
    backbones = args.backbones or [n for n, s in rtcore.backbone_specs().items() if s.kind == "bundled"]
    tasks = rtcore.list_tasks(offline_only=True)
    eps = [k / 255 for k in args.steps]
    out_dir = ROOT / "results"
    out_dir.mkdir(exist_ok=True)
    frames = []
    for bb in backbones:
        for probe in args.probes:
            out = out_dir / (f"{bb}.csv" if probe == "logistic" else f"{bb}-{probe}.csv")
            run_cli(bb, tasks, eps, args.n, args.attack, probe, out)
            frames.append(pd.read_csv(out))
    df = pd.concat(frames, ignore_index=True)
    check_relations(df)
    md = markdown(df)
    (out_dir / args.out).write_text(md + "\n")
    (out_dir / ("compact-" + args.out)).write_text(compact(df) + "\n")
    print(md)
    for line in done_when(df):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
