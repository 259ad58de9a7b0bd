"""Loss bound (i): clean loss, adversarial loss and the task-independent bound per task."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import ui

st.title("Loss bound (i)")
st.markdown(
    "Cross-entropy is convex in the features, so for every x′ in the ε-ball "
    "the adversarial loss is at most the clean loss plus max_k ‖w_k − w_y‖₂ · Δ(x). "
    "The head enters only through the spread of its weight vectors, the backbone only through Δ."
)
st.latex(r"\ell(h(g(x')),y)\;\le\;\ell(h(g(x)),y)+\max_k\lVert w_k-w_y\rVert_2\,\Delta_g(x;\varepsilon)")
ref, run = ui.main_run()
snap, eps = run.snapshot, run.request.eps

if snap.empty:
    ui.waiting_note(run)
else:
    left, right = st.columns(2)
    with left:
        if snap.at_eps(eps).empty:
            st.info("The current ε is still being computed.")
        else:
            ui.chart(fx.loss_at_eps(snap.summary, eps), key="loss_bars")
    with right:
        ui.chart(fx.loss_curves(snap.summary, eps), key="loss_curves")
    table = snap.at_eps(eps)[["task", "clean_loss", "adv_loss", "loss_bound"]].rename(columns={
        "clean_loss": "clean loss", "adv_loss": "adversarial loss (attack)", "loss_bound": "bound (i)"})
    st.dataframe(table, hide_index=True, key="loss_table")
    st.caption("Means over the test points, in nats. The adversarial loss is the largest loss any attack found "
               "(end-to-end or feature attack); the bound uses the same attack estimate of Δ, so it is a prediction.")
    ui.downloads(run, "loss")
ui.follow(run)
