"""Landing page: bound vs empirical robust accuracy for the current backbone, per task and across eps."""

from __future__ import annotations

import streamlit as st

from app import exports, state, ui
from app import figures as fx

st.title("Bound vs empirical robust accuracy")
st.markdown(
    "Does the theory predict how robust a linear probe on this frozen backbone is? "
    "A linear head is trained on the frozen backbone's features for each downstream task. **Empirical** robust "
    "accuracy comes from an end-to-end attack on the whole model; the **bound** counts the test points whose "
    "feature-space margin ρ(x) exceeds the representation shift Δ(x) that a feature attack can cause "
    "(Nern et al., NeurIPS 2023). The bound should sit at or below the empirical value."
)
ref, run = ui.main_run()
snap, eps = run.snapshot, run.request.eps

if snap.empty:
    ui.waiting_note(run)
else:
    st.subheader(f"{ref.display} at ε = {state.eps_label(eps)}, {state.NORM_LABELS[run.request.norm]}")
    if snap.at_eps(eps).empty:
        st.info("The current ε is still being computed; the curves below show what is finished.")
    else:
        left, right = st.columns([3, 2], vertical_alignment="center")
        with left:
            ui.chart(fx.accuracy_at_eps(snap.summary, eps), key="landing_bars")
        with right:
            st.dataframe(exports.display_table(snap.summary, eps), hide_index=True, key="landing_table",
                         column_config=ui.ACCURACY_COLUMNS)
    left, right = st.columns(2)
    with left:
        ui.chart(fx.accuracy_curves(snap.summary, eps), key="landing_curves")
    with right:
        ui.chart(fx.calibration_scatter(snap.summary, eps), key="landing_calibration")
    ui.downloads(run, "landing")
ui.follow(run)
