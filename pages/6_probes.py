"""Probe trade-off: what a Δ-aware head buys (bound) and costs (clean accuracy), per probe kind."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import figures as fx
from app import state, ui, view
from rtcore.config import DEFAULT_PROBE_EPS, eps_text
from rtcore.probes import list_probes
from rtcore.runs import selection
from rtcore.stats import intervals_overlap
from rtcore.tables import at_eps, in_order


TRADEOFF_COLUMNS = {"probe": ("probe", ""), "C": ("probe_C", "g"), "radius r": ("probe_radius", ".3f"),
                    "clean": ("clean_acc", "ci"), "robust (attack)": ("robust_acc", "ci"), "bound": ("bound", "ci"),
                    "bound (head subspace)": ("bound_head", "ci")}


def tradeoff_table(summary: pd.DataFrame, eps: float) -> pd.DataFrame:
    """One row per probe kind at ``eps`` (the library's order): C, radius r (a dash without one), and the shares
    with 95 % intervals; a probe not computed yet reads "computing…"."""
    rows = at_eps(summary, eps).drop_duplicates("probe")
    rows = rows.assign(probe_radius=rows["probe_radius"].where(rows["probe_radius"] > 0)) if len(rows) else rows
    return in_order(ui.text_table(rows, TRADEOFF_COLUMNS), "probe", list_probes(), fx.PENDING)


def verdict(summary: pd.DataFrame, eps: float, norm: str) -> str:
    """What the robust head buys in bound and costs in clean accuracy against logistic, and whether the change
    is larger than the intervals."""
    rows = at_eps(summary, eps).set_index("probe")
    if not {"logistic", "robust"} <= set(rows.index):
        return "The comparison sentence appears when the logistic and the robust probe are both computed at this ε."
    a, b = rows.loc["logistic"], rows.loc["robust"]

    def change(m: str) -> str:
        sep = not intervals_overlap((a[f"{m}_lo"], a[f"{m}_hi"]), (b[f"{m}_lo"], b[f"{m}_hi"]))
        return (f"**{b[m] - a[m]:+.3f}** ({a[m]:.3f} → {b[m]:.3f}; "
                f"{'intervals apart' if sep else 'intervals overlap: not told apart at this n'})")

    return (f"At ε = {eps_text(eps, norm)} the robust head changes the bound by {change('bound')}, robust accuracy "
            f"under attack by {change('robust_acc')} and clean accuracy by {change('clean_acc')}, compared with "
            "the logistic head.")


st.title("Probe trade-off")
st.markdown(
    "The bound needs margins ρ(x) larger than Δ(x). The library's linear heads on the same frozen features: "
    "**logistic** (weights penalised in raw feature space, C chosen on held-out training data), **logistic-std** "
    "(penalty on standardised weights: large raw weights on quiet features shrink ρ) and **robust** (trained "
    "against every feature shift of radius r, the median Δ of training points at "
    f"ε = {eps_text(DEFAULT_PROBE_EPS[st.session_state['norm']], st.session_state['norm'])} "
    f"({st.session_state['norm']}): it pushes training points past margin r). Does the robust head's larger bound "
    "cost clean accuracy?"
)
ref = ui.current_ref()
if ref is None:
    st.stop()
tasks = ui.task_choices()
st.session_state.setdefault("probes_task", selection.preferred(tasks, st.session_state["tasks"]))
task = st.selectbox("Downstream task", tasks, key="probes_task", format_func=state.task_label,
                    help="One task at a time: every probe kind, each with its own end-to-end attacks.")
run = ui.evaluate([ref], slot="probes", tasks=[task], probes=list_probes())
if run is None:
    st.stop()
ui.bound_note()
snap, eps, norm, key = run.snapshot, run.eps, run.request.norm, run.snapshot.tables.key
if snap.empty:
    ui.waiting_note(run)
else:
    view.chart("probes_chart", fx.probe_tradeoff, snap.summary, eps, cache=key)
    view.note("**Reading the panels.** One colour per head. Left: robust accuracy under attack (its value at ε = 0 "
               "is the clean accuracy). Middle: the bound, share of points with ρ(x) > Δ(x). Right: the bound with "
               "Δ_P, the shift inside the head's subspace (after the head-subspace attack has run). Whiskers: 95 % "
               "intervals. A head that raises the middle and right curves while its left curve starts lower buys "
               "predicted robustness with clean accuracy.", "One colour per head; whiskers: 95 % intervals.")
    ui.table(tradeoff_table(snap.summary, eps), "probes_table")
    st.markdown(verdict(snap.summary, eps, norm))
    ui.downloads(run, "probes")
ui.follow(run)
