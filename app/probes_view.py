"""The probe trade-off page's table and verdict (one backbone, one task, three probe kinds)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from .figures import at_eps
from .state import PROBES, eps_label

COLUMNS: dict[str, Any] = {
    "C": st.column_config.NumberColumn("C", format="%g", help="inverse regularisation strength chosen on held-out data"),
    "radius r": st.column_config.NumberColumn(
        "radius r", format="%.3f", help="robust probe: the feature-shift radius it is trained against (feature units)"),
    "clean": st.column_config.NumberColumn("clean", format="%.3f"),
    "robust (attack)": st.column_config.NumberColumn("robust (attack)", format="%.3f"),
    "bound": st.column_config.NumberColumn("bound", format="%.3f"),
    "bound (head subspace)": st.column_config.NumberColumn("bound (head subspace)", format="%.3f"),
}


def tradeoff_table(summary: pd.DataFrame, eps: float) -> pd.DataFrame:
    """One row per probe kind at ``eps``: C, r, clean, robust, bound, bound (head subspace)."""
    rows = at_eps(summary, eps)
    if rows.empty:
        return rows
    rows = rows.set_index("probe").reindex([p for p in PROBES if p in set(rows["probe"])]).reset_index()
    head = rows["bound_head"].where(rows["head_attack"].astype(bool)) if "head_attack" in rows else rows["bound_head"]
    return pd.DataFrame({"probe": rows["probe"], "C": rows.get("probe_C"), "radius r": rows.get("probe_radius"),
                         "clean": rows["clean_acc"], "robust (attack)": rows["robust_acc"], "bound": rows["bound"],
                         "bound (head subspace)": head})


def verdict(summary: pd.DataFrame, eps: float, norm: str) -> str:
    """One sentence: what the robust head buys in bound and costs in clean accuracy against logistic."""
    rows = at_eps(summary, eps).set_index("probe")
    if not {"logistic", "robust"} <= set(rows.index):
        return "The comparison sentence appears when the logistic and the robust probe are both computed at this ε."
    a, b = rows.loc["logistic"], rows.loc["robust"]
    d_bound, d_clean, d_rob = b["bound"] - a["bound"], b["clean_acc"] - a["clean_acc"], b["robust_acc"] - a["robust_acc"]

    def signed(v: float) -> str:
        return f"{v:+.3f}"

    return (f"At ε = {eps_label(eps, norm)} the robust head changes the bound by **{signed(d_bound)}** "
            f"({a['bound']:.3f} → {b['bound']:.3f}), robust accuracy under attack by {signed(d_rob)} and clean "
            f"accuracy by **{signed(d_clean)}** ({a['clean_acc']:.3f} → {b['clean_acc']:.3f}), compared with the "
            "logistic head.")
