"""Compare backbones: the same tasks, eps grid, sample size and attack for several backbones."""

from __future__ import annotations

import streamlit as st

from app import compare_view, state, ui, view
from app import figures as fx
from rtcore.models.ref import BackboneRef

st.title("Compare backbones")
st.markdown(
    "Standard, adversarially trained and self-supervised backbones on the same downstream tasks, with the "
    "sidebar's norm, ε, tasks, sample size and attack. Does adversarial pretraining transfer, and does the bound "
    "see it?"
)
names = [n for n in state.backbone_choices() if n != state.UPLOAD_CHOICE]
chosen = ui.persistent_multiselect("Backbones to compare", names, key="compare_backbones",
                                   format_func=state.backbone_label)
if not chosen:
    st.info("Choose at least one backbone.")
    st.stop()
with st.expander("Model cards: how each backbone was pretrained", expanded=True):
    st.table(state.card_table(chosen).set_index("backbone"))
    st.caption("From the model cards: the pretraining, and the accuracy on the upstream task (clean and under attack "
               "at the card's ε).")
refs = [BackboneRef(n) for n in chosen]

if not st.session_state.get("compare_active"):
    tasks = st.session_state["tasks"]
    why = "" if tasks else "choose at least one task in the sidebar"
    st.button(ui.plural(len(chosen), "backbone", prefix="Run the comparison (") + " × "
              + ui.plural(len(tasks), "task") + f", n = {st.session_state['n']}, {st.session_state['attack']} attack)",
              key="compare_run", type="primary", on_click=ui.activate, args=("compare_active",), disabled=bool(why),
              help=f"Disabled: {why}." if why else "Starts the comparison; cached results appear at once.")
    st.caption(f"The button is disabled: {why}." if why else
               f"Takes {compare_view.estimate(ui.request_for(refs, tasks))}. Results already in the on-disk cache "
               "appear at once; after the first run the comparison follows the sidebar.")
    st.stop()

run = ui.evaluate(refs, slot="compare")
if run is None:
    st.stop()
snap, eps, norm, key = run.snapshot, run.eps, run.request.norm, run.snapshot.tables.key
ui.bound_note()
if snap.empty:
    ui.waiting_note(run)
else:
    if snap.at_eps(eps).empty:
        st.info(f"ε = {state.eps_label(eps, norm)} is still being computed.")
    else:
        view.chart("compare_bars", fx.compare_at_eps, snap.summary, eps, cache=key)
        overlaps = compare_view.overlap_sentences(snap.summary, eps)
        if overlaps:
            st.markdown(f"**Is the best really better?** Robust accuracy at n = {run.request.specs[0].n}: a backbone "
                        "whose 95 % interval overlaps the best one's is not told apart from it by this sample.\n\n"
                        + "\n".join(f"- {line}" for line in overlaps))
        ui.table(ui.display_table(snap.summary, eps, snap.tasks, by="backbone"), "compare_table")
    view.chart("compare_curves", fx.compare_curves, snap.summary, eps, cache=key)
    ui.downloads(run, "compare")
ui.follow(run)
