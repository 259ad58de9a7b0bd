"""Landing page: bound vs empirical robust accuracy for the current backbone, per task and across eps."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import sanity_view, state, ui, view
from app.texts import text
from rtcore.config import eps_text
from rtcore.sanity import with_flags

st.title("Bound vs empirical robust accuracy")
view.note(
    "Does the theory predict how robust a linear probe on this frozen backbone is? A linear head is trained on the "
    "frozen backbone's features for each downstream task. **Empirical** robust accuracy comes from attacks on the "
    "whole model; the **bound** counts the test points whose feature-space margin ρ(x) exceeds the representation "
    "shift Δ(x) that a feature attack can cause (Nern et al., NeurIPS 2023).",
    "Solid: robust accuracy under attack · hatched: the bound ρ(x) > Δ(x), a prediction from the backbone alone.")
ref, run = ui.main_job(lambda snap: view.chart("landing_frame", fx.accuracy_at_eps, snap.summary,
                                               st.session_state["eps"], snap.tasks, "full", st.session_state["norm"]))
snap, eps, norm, key = run.snapshot, run.eps, run.request.norm, run.snapshot.tables.key

if snap.empty:
    ui.waiting_note(run)
    view.chart("landing_bars", fx.accuracy_at_eps, snap.summary, eps, snap.tasks, "full", norm)  # every task computing
else:
    st.subheader(f"{ref.display} at ε = {eps_text(eps, norm)} · {state.NORM_LABELS[norm]}")
    view.chart("landing_bars", fx.accuracy_at_eps, snap.summary, eps, snap.tasks, cache=key)
    st.markdown(f"**Why the bound sits below.** {text('why_below')}")
    table = ui.display_table(snap.summary, eps, snap.tasks)
    ui.table(with_flags(table, sanity_view.current(ref, run)), "landing_table")
    view.note(f"At ε = {eps_text(eps, norm)}; {state.sample_sizes(snap.summary)}; brackets: 95 % Wilson "
              "intervals; Δ is in the backbone's feature units.")
    view.chart("landing_curves", fx.accuracy_curves, snap.summary, eps, cache=key)
    view.note("**Reading the curves.** One panel per task, in its colour. Solid line, circles: robust accuracy under "
              "attack (at ε = 0 the clean accuracy). Dashed, squares: the bound, the share of points with ρ(x) > Δ(x). "
              "Dotted, diamonds: the same with Δ_P, the shift inside the span of the head's weight differences, the "
              "only part that moves a logit; so bound ≤ bound (head subspace) ≤ robust accuracy. Whiskers: 95 % "
              "intervals.", "solid: robust · dashed: bound · dotted: bound in the head's subspace")
    left, right = st.columns([3, 2])
    with left:
        view.chart("landing_calibration", fx.calibration_scatter, snap.summary, eps, cache=key)
    with right:
        view.note("**Reading the calibration.** One dot per task and ε (the large ones: the cursor's ε). On the "
                  "diagonal the bound predicts the attack exactly; the farther below it a dot sits, the more "
                  "robustness the attack finds that the bound does not predict. No dot can sit above the diagonal "
                  "(see *Why the bound sits below*), so what this chart measures is the gap: how much of the "
                  "robustness the backbone's Δ explains. Whiskers: 95 % intervals of both numbers.",
                  "On the diagonal: the bound predicts the attack exactly; below: robustness it misses.")
    ui.downloads(run, "landing")
    sanity_view.section(ref, run)
ui.follow(run)
