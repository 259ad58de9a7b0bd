"""The compare page's words: which bars the sample cannot order (overlapping 95 % intervals), and how long a
comparison will take (the library's measured throughput of an earlier evaluation on this server)."""

from __future__ import annotations

import pandas as pd

from rtcore.runs import fmt_seconds
from rtcore.stats import overlapping

from . import registry
from .figures import at_eps
from .jobs import Job, Request


def overlap_sentences(summary: pd.DataFrame, eps: float, metric: str = "robust_acc") -> list[str]:
    """Per task, the backbones whose 95 % intervals of ``metric`` overlap (the sample cannot order them)."""
    rows = at_eps(summary, eps).reset_index(drop=True)
    if rows.empty or rows["backbone"].nunique() < 2:
        return []
    near = overlapping(rows[f"{metric}_lo"].tolist(), rows[f"{metric}_hi"].tolist(), rows["task"].tolist())
    out = []
    for task, grp in rows.groupby("task", sort=False):
        pairs = sorted({tuple(sorted((rows.at[i, "backbone"], rows.at[j, "backbone"]))) for i in grp.index
                        for j in near[i]})
        if pairs:
            out.append(f"**{task}**: " + "; ".join(f"{a} ≈ {b}" for a, b in pairs))
    return out


def estimate(request: Request) -> str:
    """How long ``request`` takes if nothing is cached, from the throughput an evaluation on this server measured."""
    measured = [j for j in registry.JOBS.jobs() if isinstance(j, Job) and j.done and j.computed_steps
                and j.request.specs[0].attack == request.specs[0].attack]
    if not measured:
        return ("time: measured after the first computed step (on 2 CPU cores with the fast attack, n = 200 and "
                "5 tasks: about 1.5 min per backbone)")
    seconds = measured[-1].throughput.eta(request.units())
    return f"up to about {fmt_seconds(seconds)} if nothing is cached (measured on this server)" if seconds else \
        "time: measured after the first computed step"
