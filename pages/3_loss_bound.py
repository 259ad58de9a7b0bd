"""Loss bounds: clean loss, adversarial loss and the two task-independent bounds per task."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import ui, view
from rtcore.tables import at_eps

st.title("Loss bounds")
st.markdown(
    "Cross-entropy is convex in the features, so for every x′ in the ε-ball the adversarial loss is at most the "
    "clean loss plus a term that only the head's weights and the backbone's Δ determine:"
)
# full width, one under the other: side by side, formula (i) lost its Δ(x) at 1280 px
st.latex(r"\text{(i)}\quad \ell(h(g(x')),y)\le\ell(h(g(x)),y)+\max_k\lVert w_k-w_y\rVert_2\,\Delta(x)")
view.note("(i) charges the largest weight spread against the whole shift Δ.")
st.latex(r"\text{(ii)}\quad \ell(h(g(x')),y)\le\log\sum_k e^{\,z_k-z_y+\Delta(x)\lVert w_k-w_y\rVert_2}")
view.note("(ii) log-sum-exp: each class pays only its own spread, so (ii) ≤ (i) always.")
ref, run = ui.main_job()
snap, eps, norm, key = run.snapshot, run.eps, run.request.norm, run.snapshot.tables.key

if snap.empty:
    ui.waiting_note(run)
else:
    full = snap.summary[snap.summary["loss_attack"].astype(bool)]
    if full.empty:
        st.info("The loss bounds need the cross-entropy attack, which runs after the first look at every task "
                "and ε; they appear here as soon as it has finished for a task.")
    else:
        view.chart("loss_bars", fx.loss_at_eps, full, eps, snap.tasks, cache=key)
        ui.table(ui.text_table(at_eps(full, eps), {"task": ("task", ""), **{n: (m, ".4g") for m, n in
                                                                             fx.LOSS_NAMES.items()}}))
        view.note("Means over the test points, in nats. The adversarial loss is the largest loss any attack found "
                  "(a cross-entropy attack that does not stop at the first flip, the end-to-end and the feature "
                  "attacks); both bounds use the same attack estimate of Δ, so they are predictions. On every row "
                  "clean ≤ adversarial ≤ (ii) ≤ (i).", "On every row: clean ≤ adversarial ≤ (ii) ≤ (i).")
        view.chart("loss_curves", fx.loss_curves, full, eps, cache=key)
    ui.downloads(run, "loss")
ui.follow(run)
