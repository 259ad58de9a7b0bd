"""Representation vulnerability: how far the features move, and which points meet the criterion."""

from __future__ import annotations

import streamlit as st

from app import exports, state, ui
from app import figures as fx

st.title("Representation vulnerability Δ")
st.markdown(
    "Δ(x; ε) = sup ‖g(x′) − g(x)‖₂ over the ε-ball is a property of the backbone and the inputs only: one feature "
    "attack serves every head. It is measured in the backbone's raw feature units (an L2 distance between feature "
    "vectors), so compare it across backbones through the relative shift Δ/‖g(x)‖. A point **meets the criterion** "
    "when its margin ρ(x) to the head's nearest decision boundary exceeds Δ(x). Δ here comes from an attack (a lower "
    "estimate), so meeting the criterion is a prediction of robustness, not a certificate."
)
ref, run = ui.main_run()
snap, eps, norm = run.snapshot, run.eps, run.request.norm

if snap.empty:
    ui.waiting_note(run)
else:
    left, right = st.columns(2)
    with left:
        ui.chart(fx.delta_curves(snap.summary, eps), key="rep_delta_curves")
    with right:
        ui.chart(fx.relative_delta_curves(snap.summary, eps), key="rep_relative")
    ui.chart(fx.delta_distribution(snap.samples, eps), key="rep_delta_box")

    tasks = list(dict.fromkeys(snap.summary["task"]))
    task = st.selectbox("Task for the margin plot and the gallery", tasks, key="rep_task")
    rows = snap.samples[snap.samples["task"] == task]
    at = fx.at_eps(rows, eps)
    if at.empty:
        st.info(f"ε = {state.eps_label(eps, norm)} is still being computed for {task}.")
    else:
        left, right = st.columns([3, 2])
        with left:
            ui.chart(fx.rho_delta_scatter(rows, eps), key="rep_rho_delta")
        with right:
            st.markdown(
                "**Reading the scatter.** Every dot is a test point. Above the dashed line ρ = Δ the feature "
                "attack did not move g(x) far enough to cross the boundary: the criterion is met (green). Blue "
                "points survived the attacks without meeting the criterion: the bound is conservative there. "
                "Red points were broken by an attack or misclassified to begin with (ρ ≤ 0).")
            st.dataframe(exports.status_counts(at), hide_index=True, key="rep_counts")
        item = exports.gallery_item(snap, ref.display, task, eps)
        if item is not None:
            names = snap.class_names.get(task)
            labels = [names[int(i)] if names else str(int(i)) for i in item["label"]]
            ui.chart(fx.gallery(item["x"], item["x_adv"], eps, labels, norm=norm), key="rep_gallery")
            st.caption("Top: clean test images with their labels. Middle: the feature attack's image x′, which "
                       "maximises ‖g(x′) − g(x)‖ inside the ε-ball. Bottom: the perturbation divided by ε "
                       "(red brighter, blue darker), so its structure is visible even at small ε.")
    ui.downloads(run, "rep")
ui.follow(run)
