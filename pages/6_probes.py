"""Probe trade-off: what a Δ-aware head buys (bound) and costs (clean accuracy), per probe kind."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import probes_view, state, ui, view

st.title("Probe trade-off")
st.markdown(
    "The bound needs margins ρ(x) larger than Δ(x). The library's linear heads on the same frozen features: "
    "**logistic** (weights penalised in raw feature space, C chosen on held-out training data), **logistic-std** "
    "(penalty on standardised weights: large raw weights on quiet features shrink ρ) and **robust** (trained "
    "against every feature shift of radius r, the median Δ of training points at ε = 2/255 or 0.2: it pushes "
    "training points past margin r). Does the robust head's larger bound cost clean accuracy?"
)
ref = ui.current_ref()
if ref is None:
    st.stop()
tasks = ui.task_choices()
default = next((t for t in st.session_state["tasks"] if t in tasks), tasks[0])
st.session_state.setdefault("probes_task", default)
task = st.selectbox("Downstream task", tasks, key="probes_task", format_func=state.task_label,
                    help="One task at a time: every probe kind, each with its own end-to-end attacks.")
run = ui.evaluate([ref], slot="probes", tasks=[task], probes=state.probes())
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
    ui.table(probes_view.tradeoff_table(snap.summary, eps), "probes_table")
    st.markdown(probes_view.verdict(snap.summary, eps, norm))
    ui.downloads(run, "probes")
ui.follow(run)
