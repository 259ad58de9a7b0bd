"""Transfer methods: linear probing vs fine-tuning, and whether the bound helps choose between them."""

from __future__ import annotations

import streamlit as st

from app import state
from app import transfer_view as tv
from rtcore.transfer import TRANSFER_METHODS, FineTuneRecipe


def chart(fig: object, key: str) -> None:
    st.plotly_chart(fig, theme="streamlit", key=key, config={"displaylogo": False})


st.title("Transfer methods")
st.markdown(
    "A linear probe keeps the pretrained representation g, so its robustness is governed by g's vulnerability Δ, "
    "which the bound reads before any training. Fine-tuning changes g: does it keep the robustness of an "
    "adversarially pretrained backbone, and did the base backbone's Δ predict which method keeps most?"
)
with st.expander("The methods and how they are trained"):
    st.markdown(tv.method_help())
    st.caption(tv.recipe_note())

ref, why = tv.sidebar_ref(st.session_state)
if ref is None:
    st.info(why)
    st.stop()
try:
    g = tv.backbone(ref)
except Exception as e:  # noqa: BLE001 - unavailable weights, a bad checkpoint: a message, never a traceback
    st.error(f"Backbone {ref.display!r} cannot be loaded: {e}")
    st.stop()
blocks = tv.block_names(g)
tasks, first = tv.task_choices(st.session_state.get("tasks", []))
c1, c2, c3, c4 = st.columns([2, 3, 1, 1])
task = c1.selectbox("Downstream task", tasks, index=first, key="transfer_task")
methods = c2.multiselect("Methods", list(TRANSFER_METHODS), default=list(TRANSFER_METHODS), key="transfer_methods")
k = int(c3.number_input("k (ft-last-k)", min_value=1, max_value=len(blocks), value=1, key="transfer_k",
                        help=f"ft-last-k trains the last k of the blocks {blocks}"))
epochs = int(c4.number_input("epochs", min_value=1, max_value=20, value=FineTuneRecipe.epochs, key="transfer_epochs"))
norm, n, attack = st.session_state["norm"], st.session_state["n"], st.session_state["attack"]  # the sidebar's
eps_grid = tv.eps_values(norm, st.session_state["eps"])
try:
    request = tv.make_request(g, task, methods, k, eps_grid, norm, n, attack, epochs)
except ValueError as e:
    st.error(str(e))
    st.stop()
st.caption(f"⚠️ {state.BOUND_NOTE}")

job = tv.find(request)
if job is None:
    st.caption(f"{len(request.methods)} methods on {g.name} × {task}, n = {n}, {attack} attack, {norm}, "
               f"{len(eps_grid)} ε values. Fine-tuning takes about half a minute per method on two CPU cores "
               "the first time; cached results appear at once.")
    if not st.button("Adapt and evaluate", type="primary", key="transfer_run"):
        st.stop()
    job = tv.submit(request, g)
if not job.done:
    bar = st.progress(*job.progress())
    while not job.wait(tv.POLL_S):
        fraction, text = job.progress()
        bar.progress(fraction, text=text)
    st.rerun()
if job.error is not None or job.result is None:
    st.error(f"The comparison failed: {job.error}")
    if st.button("Try again", key="transfer_retry"):
        tv.submit(request, g)
        st.rerun()
    st.stop()

result = job.result
eps = tv.nearest_eps(result.summary, st.session_state["eps"])
st.caption(f"✓ All results ready: {len(result.summary)} (method, ε) results in {job.elapsed:.0f} s, "
           "kept in the on-disk cache.")
st.info(tv.verdict_text(result, eps))
st.dataframe(tv.method_summary(result, eps), hide_index=True, key="transfer_table")
st.caption(f"At ε = {tv.eps_text(eps)}. 'bound with base Δ' uses each method's own margins with the base "
           "backbone's Δ (as if fine-tuning had left the representation's vulnerability unchanged): ranking the "
           "methods by it is what the pre-fine-tuning Δ predicts.")
left, right = st.columns(2)
with left:
    chart(tv.accuracy_curves(result.summary, eps), key="transfer_acc_curves")
with right:
    chart(tv.delta_curves(result.summary, eps), key="transfer_delta_curves")
st.subheader("How far fine-tuning moved the representation")
chart(tv.block_distance_bars(result), key="transfer_block_bars")
st.dataframe(tv.movement_table(result), hide_index=True, key="transfer_movement")
