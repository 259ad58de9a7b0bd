"""Compare backbones: the same tasks, eps grid, sample size and attack for several backbones."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import jobs, state, ui, view
from app import figures as fx
from rtcore.config import eps_text
from rtcore.models.ref import BackboneRef
from rtcore.runs import EvalRequest, fmt_seconds
from rtcore.stats import overlapping
from rtcore.tables import at_eps


def overlap_sentences(summary: pd.DataFrame, eps: float, metric: str = "robust_acc") -> list[str]:
    """Per task: the best backbone by ``metric`` and the others whose 95 % interval overlaps the best one's (the
    sample cannot say the best is better than them), or that it is told apart from all."""
    rows = at_eps(summary, eps).reset_index(drop=True)
    if rows.empty or rows["backbone"].nunique() < 2:
        return []
    near = overlapping(rows[f"{metric}_lo"].tolist(), rows[f"{metric}_hi"].tolist(), rows["task"].tolist())
    out = []
    for task, grp in rows.groupby("task", sort=False):
        best = int(grp[metric].idxmax())
        tied = [str(rows.at[j, "backbone"]) for j in near[best]]
        head = f"**{task}**: best {rows.at[best, 'backbone']} ({rows.at[best, metric]:.2f})"
        out.append(f"{head}, not told apart from {', '.join(tied)}" if tied else f"{head}, told apart from all")
    return out


def estimate(request: EvalRequest) -> str:
    """How long ``request`` takes if nothing is cached, from the unit times measured on this server: the one
    estimate the progress bar's time left also comes from (no number before a step was measured)."""
    seconds = jobs.SCHEDULER.clock.left(request.workload())
    if seconds is None:
        return "a time measured on this server once its first step has computed"
    return f"up to about {fmt_seconds(seconds)} if nothing is cached (measured on this server)"


def keep_choice() -> None:
    st.session_state["compare_backbones"] = st.session_state["compare_backbones_w"]


def activate() -> None:
    st.session_state["compare_active"] = True


st.title("Compare backbones")
st.markdown(
    "Standard, adversarially trained and self-supervised backbones on the same downstream tasks, with the "
    "sidebar's norm, ε, tasks, sample size and attack. Does adversarial pretraining transfer, and does the bound "
    "see it?"
)
names = [n for n in state.backbone_choices() if n != state.UPLOAD_CHOICE]
# the choice survives page switches: its value under compare_backbones, the widget under compare_backbones_w
st.session_state["compare_backbones_w"] = [o for o in st.session_state.get("compare_backbones", []) if o in names]
chosen = st.multiselect("Backbones to compare", names, key="compare_backbones_w", on_change=keep_choice,
                        format_func=state.backbone_label)
if not chosen:
    st.info("Choose at least one backbone.")
    st.stop()
with st.expander("Model cards: how each backbone was pretrained", expanded=True):
    st.table(state.card_columns(chosen).set_index("backbone"))
    st.caption("From the model cards: the pretraining, and the accuracy on the upstream task (clean and under attack "
               "at the card's ε).")
refs = [BackboneRef(n) for n in chosen]

if not st.session_state.get("compare_active"):
    tasks = st.session_state["tasks"]
    why = "" if tasks else "choose at least one task in the sidebar"
    st.button(ui.plural(len(chosen), "backbone", prefix="Run the comparison (") + " × "
              + ui.plural(len(tasks), "task") + f", n = {st.session_state['n']}, {st.session_state['attack']} attack)",
              key="compare_run", type="primary", on_click=activate, disabled=bool(why),
              help=f"Disabled: {why}." if why else "Starts the comparison; cached results appear at once.")
    st.caption(f"The button is disabled: {why}." if why else
               f"Takes {estimate(ui.request_for(refs, tasks))}. Results already in the on-disk cache "
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
        st.info(f"ε = {eps_text(eps, norm)} is still being computed.")
    else:
        view.chart("compare_bars", fx.compare_at_eps, snap.summary, eps, cache=key)
        overlaps = overlap_sentences(snap.summary, eps)
        if overlaps:
            st.markdown(f"**Is the best really better?** Robust accuracy at n = {run.request.specs[0].n}: a backbone "
                        "whose 95 % interval overlaps the best one's is not told apart from it by this sample.\n\n"
                        + "\n".join(f"- {line}" for line in overlaps))
        ui.table(ui.display_table(snap.summary, eps, snap.tasks, by="backbone"), "compare_table")
    view.chart("compare_curves", fx.compare_curves, snap.summary, eps, cache=key)
    ui.downloads(run, "compare")
ui.follow(run)
