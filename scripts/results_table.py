"""Generate the README results table with the CLI: every bundled backbone on every offline task.

    python scripts/results_table.py --eps 0.03 0.1 --n 200 --attack standard

Each backbone is one `python -m rtcore evaluate` run (cached, resumable); its CSV goes to
results/<backbone>.csv and the merged markdown table to results/table.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rtcore  # noqa: E402


def run_cli(backbone: str, tasks: list[str], eps: list[float], n: int, attack: str, out: Path) -> None:
    cmd = rtcore.cli_command(backbone, tasks, eps, "linf", n, attack, out=str(out))
    print(f"$ {cmd}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, *cmd.split()[1:]], check=True, cwd=ROOT)


def markdown(df: pd.DataFrame) -> str:
    cols = ["backbone", "task", "eps", "clean_acc", "robust_acc", "bound", "bound_feature_only", "mean_delta"]
    head = "| backbone | task | eps | clean acc | robust acc (empirical) | bound | bound (feature attack only) | mean Delta |"
    lines = [head, "|" + "---|" * len(cols)]
    for _, r in df[cols].iterrows():
        lines.append(f"| {r.backbone} | {r.task} | {r.eps:g} | {r.clean_acc:.3f} | {r.robust_acc:.3f} | {r.bound:.3f} "
                     f"| {r.bound_feature_only:.3f} | {r.mean_delta:.3f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--eps", nargs="+", type=float, default=[0.03, 0.1])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--attack", default="standard")
    p.add_argument("--backbones", nargs="*", help="default: every bundled backbone")
    args = p.parse_args()
    backbones = args.backbones or [n for n, s in rtcore.backbone_specs().items() if s.kind == "bundled"]
    tasks = rtcore.list_tasks(offline_only=True)
    out_dir = ROOT / "results"
    out_dir.mkdir(exist_ok=True)
    frames = []
    for bb in backbones:
        out = out_dir / f"{bb}.csv"
        run_cli(bb, tasks, args.eps, args.n, args.attack, out)
        frames.append(pd.read_csv(out))
    df = pd.concat(frames, ignore_index=True)
    md = markdown(df)
    (out_dir / "table.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
