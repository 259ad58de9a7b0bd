"""The compare page's words: whether the sample can tell the best backbone of a task from the others (overlapping
95 % intervals), and how long a comparison will take (the library's measured throughput on this server)."""

from __future__ import annotations

import pandas as pd

from rtcore.runs import EvalRequest, fmt_seconds
from rtcore.stats import overlapping

from . import jobs
from .figures import at_eps


def overlap_sentences(summary: pd.DataFrame, eps: float, metric: str = "robust_acc") -> list[str]:
    """Per task: the best backbone by ``metric`` and the others whose 95 % interval overlaps the best one's (the
    sample cannot say the best is better than them), or that it is told apart from all."""
    rows = at_eps(summary, eps).reset_index(drop=True)
    if rows.empty or rows["backbone"].nunique() < 2:
        return []
    near = overlapping(rows[f"{metric}_lo"].tolist(), rows[f"{metric}_hi"].tolist(), rows["task"].tolist())
    out = []
    for task, grp in rows.groupby("task", sort=False):
        best = int(grp[metric].idxmax())
        tied = [str(rows.at[j, "backbone"]) for j in near[best]]
        head = f"**{task}**: best {rows.at[best, 'backbone']} ({rows.at[best, metric]:.2f})"
        out.append(f"{head}, not told apart from {', '.join(tied)}" if tied else f"{head}, told apart from all")
    return out


def estimate(request: EvalRequest) -> str:
    """How long ``request`` takes if nothing is cached, from the unit times measured on this server: the one
    estimate the progress bar's time left also comes from (no number before a step was measured)."""
    seconds = jobs.SCHEDULER.clock.left(request.workload())
    if seconds is None:
        return "a time measured on this server once its first step has computed"
    return f"up to about {fmt_seconds(seconds)} if nothing is cached (measured on this server)"
