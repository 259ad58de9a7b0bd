"""Landing page: bound vs empirical robust accuracy for the current backbone, per task and across eps."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import sanity_view, state, ui

st.title("Bound vs empirical robust accuracy")
st.markdown(
    "Does the theory predict how robust a linear probe on this frozen backbone is? A linear head is trained on the "
    "frozen backbone's features for each downstream task. **Empirical** robust accuracy comes from attacks on the "
    "whole model; the **bound** counts the test points whose feature-space margin ρ(x) exceeds the representation "
    "shift Δ(x) that a feature attack can cause (Nern et al., NeurIPS 2023). The bound should sit at or below the "
    "empirical value."
)
ref, run = ui.main_run()
snap, eps, norm, key = run.snapshot, run.eps, run.request.norm, run.snapshot.tables.key

if snap.empty:
    ui.waiting_note(run)
    ui.chart("landing_bars", fx.accuracy_at_eps, snap.summary, eps, snap.tasks, "full", norm)  # every task computing
else:
    st.subheader(f"{ref.display} at ε = {state.eps_label(eps, norm)} · {state.NORM_LABELS[norm]}")
    ui.chart("landing_bars", fx.accuracy_at_eps, snap.summary, eps, snap.tasks, cache=key)
    table = ui.display_table(snap.summary, eps, snap.tasks)
    ui.table(sanity_view.with_flags(table, sanity_view.current(ref, run)), "landing_table")
    st.caption(f"At ε = {state.eps_label(eps, norm)}, n = {run.request.specs[0].n} test points per task; brackets: "
               "95 % Wilson intervals; Δ is in the backbone's feature units.")
    ui.chart("landing_curves", fx.accuracy_curves, snap.summary, eps, cache=key)
    st.caption("**Reading the curves.** Colour: the task. Solid: robust accuracy under attack (at ε = 0 the clean "
               "accuracy). Dashed: the bound, the share of points with ρ(x) > Δ(x). Dotted: the same with Δ_P, the "
               "shift inside the span of the head's weight differences, the only part that moves a logit; so "
               "bound ≤ bound (head subspace) ≤ robust accuracy. Whiskers: 95 % intervals. The ε axis is linear, "
               "its ticks are the computed ε values.")
    left, right = st.columns([3, 2])
    with left:
        ui.chart("landing_calibration", fx.calibration_scatter, snap.summary, eps, cache=key)
    with right:
        st.markdown("**Reading the calibration.** One dot per task and ε (the large ones: the cursor's ε). On the "
                    "diagonal the bound predicts the attack exactly; below it the bound is conservative, as it must "
                    "be; a dot above it would contradict the theory (it never happens by construction). The "
                    "whiskers are the 95 % intervals of both numbers.")
    ui.downloads(run, "landing")
    sanity_view.section(ref, run)
ui.follow(run)
