"""Representation vulnerability: how far the features move, and which points meet the criterion."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import state, ui, view
from rtcore.config import eps_text
from rtcore.tables import at_eps

st.title("Representation vulnerability Δ")
view.note(
    "Δ(x; ε) = sup ‖g(x′) − g(x)‖₂ over the ε-ball is a property of the backbone and the inputs only: one feature "
    "attack serves every head. It is measured in the backbone's raw feature units (an L2 distance between feature "
    "vectors), so compare it across backbones through the relative shift Δ/‖g(x)‖. A point **meets the criterion** "
    "when its margin ρ(x) to the head's nearest decision boundary exceeds Δ(x). Δ here comes from an attack (a lower "
    "estimate), so meeting the criterion is a prediction of robustness, not a certificate.",
    "Δ: how far an attack moves the features; a point is predicted robust when its margin ρ(x) exceeds it.")
ref, run = ui.main_job()
snap, eps, norm, key = run.snapshot, run.eps, run.request.norm, run.snapshot.tables.key

if snap.empty:
    ui.waiting_note(run)
else:
    view.chart("rep_delta_curves", fx.delta_curves, snap.summary, eps, cache=key)
    view.chart("rep_relative", fx.relative_delta_curves, snap.summary, eps, cache=key)
    if st.toggle("Show the distribution of Δ(x) per ε (box plots of every test point)", key="rep_show_box"):
        view.chart("rep_delta_box", fx.delta_distribution, snap.samples, cache=key)

    tasks = list(dict.fromkeys(snap.summary["task"]))
    task = st.selectbox("Task for the margin plot and the gallery", tasks, key="rep_task", format_func=state.task_label)
    rows = snap.samples[snap.samples["task"] == task]
    at = at_eps(rows, eps)
    if at.empty:
        st.info(f"ε = {eps_text(eps, norm)} is still being computed for {task}.")
    else:
        left, right = st.columns([3, 2])
        with left:
            view.chart("rep_rho_delta", fx.rho_delta_scatter, rows, eps, fx.colours_for(tasks)[task], cache=(*key, task))
        with right:
            view.note(
                "**Reading the scatter.** Every marker is a test point of this task. Above the dashed line ρ = Δ the "
                "feature attack did not move g(x) far enough to cross the boundary: the criterion is met (filled "
                "circles). Open circles survived every attack without meeting the criterion: the bound is "
                "conservative there. Crosses were broken by an attack or misclassified to begin with (ρ ≤ 0).",
                "Above the line ρ = Δ: the criterion is met.")
            counts = fx.status_of(at).value_counts().reindex(list(fx.STATUS), fill_value=0)
            ui.table(counts.rename("points").rename_axis("status").reset_index())
        item = snap.tables.gallery.get((ref.display, task, eps))
        if item is not None and st.toggle("Show the attack gallery (clean and attacked images)", key="rep_show_gallery"):
            names = snap.tables.class_names.get(task)
            labels = [names[int(i)] if names else str(int(i)) for i in item["label"]]
            view.chart("rep_gallery", fx.gallery, item["x"], item["x_adv"], eps, tuple(labels), norm, cache=(*key, task))
            view.note("Top: clean test images with their labels. Middle: the feature attack's image x′, which "
                       "maximises ‖g(x′) − g(x)‖ inside the ε-ball. Bottom: the perturbation divided by ε "
                       "(red brighter, blue darker), so its structure is visible even at small ε.")
    ui.downloads(run, "rep")
ui.follow(run)
