"""Compare backbones: the same tasks, eps grid, sample size and attack for several backbones."""

from __future__ import annotations

import streamlit as st

from app import backbones as bb
from app import exports, state, ui
from app import figures as fx

st.title("Compare backbones")
st.markdown(
    "Standard, adversarially trained and self-supervised backbones on the same downstream tasks, with the "
    "sidebar's norm, ε, tasks, sample size and attack. Does adversarial pretraining transfer, and does the bound "
    "see it?"
)
names = [n for n in state.backbone_choices() if n != state.UPLOAD_CHOICE]
chosen = ui.persistent_multiselect("Backbones to compare", names, key="compare_backbones",
                                   format_func=state.backbone_label)
if chosen:
    st.dataframe(state.card_table(chosen), hide_index=True, key="compare_cards", column_config=ui.CARD_COLUMNS)
    st.caption("From the model cards: how each bundled backbone was pretrained, and its accuracy on the upstream "
               "task (clean and under attack at the card's ε).")
else:
    st.info("Choose at least one backbone.")
    st.stop()

if not st.session_state.get("compare_active"):
    tasks = st.session_state["tasks"]
    why = "" if tasks else "choose at least one task in the sidebar"
    st.button(ui.plural(len(chosen), "backbone", prefix="Run the comparison (") + " × "
              + ui.plural(len(tasks), "task") + f", n = {st.session_state['n']}, {st.session_state['attack']} attack)",
              key="compare_run", type="primary", on_click=ui.activate, args=("compare_active",), disabled=bool(why),
              help=f"Disabled: {why}." if why else "Starts the comparison; cached results appear at once.")
    st.caption(f"The button is disabled: {why}." if why else
               "Results already in the on-disk cache appear at once; the rest is computed with a progress bar. "
               "After the first run the comparison follows the sidebar.")
    st.stop()

run = ui.evaluate([bb.BackboneRef(n) for n in chosen], slot="compare")
if run is None:
    st.stop()
snap, eps, norm = run.snapshot, run.eps, run.request.norm
ui.bound_note()
if snap.empty:
    ui.waiting_note(run)
else:
    if snap.at_eps(eps).empty:
        st.info(f"ε = {state.eps_label(eps, norm)} is still being computed.")
    else:
        ui.chart(fx.compare_at_eps(snap.summary, eps), key="compare_bars")
        st.caption("Left: robust accuracy under attack; right (hatched): the bound, the share of points with "
                   "ρ(x) > Δ(x). Every bar carries its value, so a bar of height 0 reads 0.00.")
        st.dataframe(exports.display_table(snap.summary, eps, by="backbone"), hide_index=True, key="compare_table",
                     column_config=ui.ACCURACY_COLUMNS)
    ui.chart(fx.compare_curves(snap.summary, eps), key="compare_curves")
    ui.downloads(run, "compare")
ui.follow(run)
