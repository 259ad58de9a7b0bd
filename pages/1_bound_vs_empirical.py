"""Landing page: bound vs empirical robust accuracy for the current backbone, per task and across eps."""

from __future__ import annotations

import streamlit as st

from app import exports, sanity_view, state, ui
from app import figures as fx

st.title("Bound vs empirical robust accuracy")
st.markdown(
    "Does the theory predict how robust a linear probe on this frozen backbone is? A linear head is trained on the "
    "frozen backbone's features for each downstream task. **Empirical** robust accuracy comes from attacks on the "
    "whole model; the **bound** counts the test points whose feature-space margin ρ(x) exceeds the representation "
    "shift Δ(x) that a feature attack can cause (Nern et al., NeurIPS 2023). The bound should sit at or below the "
    "empirical value."
)
ref, run = ui.main_run()
snap, eps, norm = run.snapshot, run.eps, run.request.norm

if snap.empty:
    ui.waiting_note(run)
else:
    st.subheader(f"{ref.display} at ε = {state.eps_label(eps, norm)} · {state.NORM_LABELS[norm]}")
    ui.chart(fx.accuracy_at_eps(snap.summary, eps), key="landing_bars")
    if snap.at_eps(eps).empty:
        st.info(f"ε = {state.eps_label(eps, norm)} is still being computed; the bars show clean accuracy so far.")
    else:
        table = exports.display_table(snap.summary, eps).drop(columns="n")
        st.dataframe(sanity_view.with_flags(table, sanity_view.current(run, ref)), hide_index=True,
                     key="landing_table", column_config={**ui.ACCURACY_COLUMNS, **sanity_view.TABLE_COLUMNS})
        st.caption(f"At ε = {state.eps_label(eps, norm)}, n = {run.request.n} test points per task. Hover a "
                   "column name for its meaning; Δ is in the backbone's feature units.")
    left, right = st.columns(2)
    with left:
        ui.chart(fx.accuracy_curves(snap.summary, eps), key="landing_curves")
        st.caption("**Reading the curves.** Solid: robust accuracy under attack (at ε = 0 the clean accuracy). "
                   "Dashed: the bound, the share of points with ρ(x) > Δ(x). Dotted: the same with Δ_P, the shift "
                   "inside the span of the head's weight differences, the only part that moves a logit; so "
                   "bound ≤ bound (head subspace) ≤ robust accuracy. A gap between dotted and solid is what the "
                   "Cauchy-Schwarz step of the theory gives away.")
    with right:
        ui.chart(fx.calibration_scatter(snap.summary, eps), key="landing_calibration")
        st.caption("**Reading the calibration.** One dot per task and ε. On the diagonal the bound predicts the "
                   "attack exactly; below it the bound is conservative, as it must be; a dot above it would "
                   "contradict the theory (it never happens by construction).")
    ui.downloads(run, "landing")
    sanity_view.section(ref, run)
ui.follow(run)
