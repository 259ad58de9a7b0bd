"""Compare backbones: the same tasks, eps grid, sample size and attack for several backbones."""

from __future__ import annotations

import streamlit as st

from app import backbones as bb
from app import exports, state, ui
from app import figures as fx

st.title("Compare backbones")
st.markdown(
    "Standard, adversarially trained and self-supervised backbones on the same downstream tasks, with the "
    "sidebar's ε, norm, tasks, sample size and attack. Does adversarial pretraining transfer, and does the bound "
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
    steps = len(chosen) * len(st.session_state["tasks"])
    st.button(f"Run the comparison ({len(chosen)} backbones × {len(st.session_state['tasks'])} tasks, "
              f"n = {st.session_state['n']}, {st.session_state['attack']} attack)", key="compare_run",
              type="primary", on_click=ui.activate, args=("compare_active",), disabled=steps == 0)
    st.caption("Results already in the on-disk cache appear at once; the rest is computed with a progress bar. "
               "After the first run the comparison follows the sidebar.")
    st.stop()

run = ui.evaluate([bb.BackboneRef(n) for n in chosen], slot="compare")
if run is None:
    st.stop()
snap, eps = run.snapshot, run.request.eps
ui.bound_note()
if snap.empty:
    ui.waiting_note(run)
else:
    if snap.at_eps(eps).empty:
        st.info("The current ε is still being computed.")
    else:
        ui.chart(fx.compare_at_eps(snap.summary, eps), key="compare_bars")
        st.dataframe(exports.display_table(snap.summary, eps, by="backbone"), hide_index=True, key="compare_table",
                     column_config=ui.ACCURACY_COLUMNS)
    ui.chart(fx.compare_curves(snap.summary, eps), key="compare_curves")
    ui.downloads(run, "compare")
ui.follow(run)
