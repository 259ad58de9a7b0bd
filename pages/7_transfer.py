"""Transfer methods: linear probing vs fine-tuning, and whether the bound helps choose between them."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import jobs, ui, view
from app import transfer_view as tv
from app.texts import text
from rtcore.config import default_cache_dir, eps_text, nearest_eps
from rtcore.export import csv_bytes
from rtcore.runs import TransferRequest, fmt_seconds
from rtcore.runs.compare import block_distances
from rtcore.runs.reproduce import comparison_toml, download_name
from rtcore.transfer import TRANSFER_METHODS, FineTuneRecipe

st.title("Transfer methods")
st.markdown(
    "A linear probe keeps the pretrained representation g, so its robustness is governed by g's vulnerability Δ, "
    "which the bound reads before any training. Fine-tuning changes g: does it keep the robustness of an "
    "adversarially pretrained backbone, and did the base backbone's Δ predict which method keeps most?"
)
with st.expander("The methods and how they are trained"):
    st.markdown(tv.method_help())
    st.caption(tv.recipe_note())

ref = ui.current_ref()
g = ui.load(ref) if ref is not None else None
if ref is None or g is None:
    st.stop()
blocks = tv.block_names(g)
tasks, first = tv.task_choices(st.session_state.get("tasks", []))
c1, c2, c3, c4 = st.columns([2, 3, 1, 1])
task = c1.selectbox("Downstream task", tasks, index=first, key="transfer_task")
methods = c2.multiselect("Methods", list(TRANSFER_METHODS), default=list(TRANSFER_METHODS), key="transfer_methods")
k = int(c3.number_input("k (ft-last-k)", min_value=1, max_value=len(blocks), value=1, key="transfer_k",
                        help=f"ft-last-k trains the last k of the blocks {blocks}"))
epochs = int(c4.number_input("epochs", min_value=1, max_value=20, value=FineTuneRecipe.epochs, key="transfer_epochs"))
s = st.session_state
try:
    request = TransferRequest.over_grid(g, ref, task, methods, k, s["eps"], s["norm"], s["n"], s["attack"], epochs,
                                        str(default_cache_dir()))
except ValueError as e:
    st.error(str(e))
    st.stop()
ui.bound_note()

job = jobs.SCHEDULER.get(request)
if job is None:
    st.caption(f"{ui.plural(len(request.methods), 'method')} on {g.name} × {task}, n = {request.n}, {request.attack} "
               f"attack, {request.norm}, {len(request.eps)} ε values. Cached results appear at once; the time left "
               "is measured on this server after the first method (one estimate, the progress bar's).")
    if not st.button("Adapt and evaluate", type="primary", key="transfer_run"):
        st.stop()
    job = jobs.submit_transfer(request, g)
if not job.done:
    jobs.watch(job, job.version, tv.method_text(request))
    jobs.settle(job, job.version)
    st.stop()
result = job.result
if result is None:
    errors = "; ".join(jobs.error_message(e) for e in job.state().errors)
    st.error(f"The comparison failed: {errors or 'it was stopped'}")
    if st.button("Try again", key="transfer_retry"):
        jobs.SCHEDULER.discard(request)
        st.rerun()
    st.stop()

eps = nearest_eps(s["eps"], result.summary["eps"].unique())
st.caption(f"{ui.READY} {len(result.summary)} (method, ε) results in {fmt_seconds(job.elapsed())}, "
           "kept in the on-disk cache.")
st.info(tv.verdict_text(result, eps, request.norm))
ui.table(tv.method_summary(result, eps), "transfer_table")
st.caption(f"At ε = {eps_text(eps, request.norm)}; brackets: 95 % intervals. 'bound with base Δ' uses each "
           "method's own margins with the base backbone's Δ (as if fine-tuning had left the representation's "
           "vulnerability unchanged): ranking the methods by it is what the pre-fine-tuning Δ predicts.")
view.chart("transfer_acc_curves", fx.method_curves, result.summary, eps)
view.chart("transfer_delta_curves", fx.method_delta_curves, result.summary, eps)
st.subheader("How far fine-tuning moved the representation")
view.chart("transfer_block_bars", fx.block_distance_bars, block_distances(result))
ui.table(tv.movement_table(result))

st.markdown("**Download and reproduce**")
r = request
names = {kind: download_name(f"transfer-{kind}-{r.task}", [r.backbone.display], r.norm, r.n, r.attack, ext=ext)
         for kind, ext in (("summary", "csv"), ("samples", "csv"), ("sweep", "toml"))}
ui.download_row("transfer", [("Summary CSV", lambda: csv_bytes(result.summary), names["summary"]),
                             ("Per-sample CSV", lambda: csv_bytes(result.samples), names["samples"]),
                             ("Sweep file (.toml)", comparison_toml(r).encode(), names["sweep"])])
st.caption(text("transfer_downloads"))
