"""The probe trade-off page's table and sentence (one backbone, one task, every probe kind of the library)."""

from __future__ import annotations

import pandas as pd

from .figures import at_eps
from .state import MISSING, PENDING, eps_label, probes
from .ui import with_interval


def tradeoff_table(summary: pd.DataFrame, eps: float) -> pd.DataFrame:
    """One row per probe kind at ``eps`` (the library's order): C, radius r, and clean, robust, bound and bound
    (head subspace) with 95 % intervals; a probe not computed yet reads "computing…"."""
    rows = at_eps(summary, eps).drop_duplicates("probe").set_index("probe")
    out = []
    for p in probes():
        if p not in rows.index:
            out.append({"probe": p, **dict.fromkeys(("C", "radius r", "clean", "robust (attack)", "bound",
                                                      "bound (head subspace)"), PENDING)})
            continue
        r = rows.loc[[p]]
        head = r.assign(bound_head=r["bound_head"].where(r["head_attack"].astype(bool)))
        out.append({"probe": p, "C": f"{r['probe_C'].iloc[0]:g}",
                    "radius r": f"{r['probe_radius'].iloc[0]:.3f}" if r["probe_radius"].iloc[0] else MISSING,
                    "clean": with_interval(r, "clean_acc")[0], "robust (attack)": with_interval(r, "robust_acc")[0],
                    "bound": with_interval(r, "bound")[0], "bound (head subspace)": with_interval(head, "bound_head")[0]})
    return pd.DataFrame(out)


def verdict(summary: pd.DataFrame, eps: float, norm: str) -> str:
    """What the robust head buys in bound and costs in clean accuracy against logistic, and whether the change
    is larger than the intervals."""
    rows = at_eps(summary, eps).set_index("probe")
    if not {"logistic", "robust"} <= set(rows.index):
        return "The comparison sentence appears when the logistic and the robust probe are both computed at this ε."
    a, b = rows.loc["logistic"], rows.loc["robust"]

    def change(m: str) -> str:
        sep = b[f"{m}_lo"] > a[f"{m}_hi"] or a[f"{m}_lo"] > b[f"{m}_hi"]
        return (f"**{b[m] - a[m]:+.3f}** ({a[m]:.3f} → {b[m]:.3f}; "
                f"{'intervals apart' if sep else 'intervals overlap: not told apart at this n'})")

    return (f"At ε = {eps_label(eps, norm)} the robust head changes the bound by {change('bound')}, robust accuracy "
            f"under attack by {change('robust_acc')} and clean accuracy by {change('clean_acc')}, compared with "
            "the logistic head.")
