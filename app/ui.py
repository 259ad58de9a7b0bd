"""Streamlit glue shared by app.py and the pages: the sidebar, cached backbones, following a job.

Everything computed comes from the modules of :mod:`app`; everything drawn from :mod:`app.figures`.
This module only turns session state into requests and results into widgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

import rtcore
from app import backbones as bb
from app import exports, jobs, state, toy
from rtcore import Backbone, BackboneUnavailableError, CheckpointError

POLL_S = 0.3
READY = "✓ All results ready:"  # the browser test and scripts/time_to_first_plot.py wait for this text
ACCURACY_COLUMNS: dict[str, Any] = {
    "clean": st.column_config.NumberColumn("clean", format="%.3f", help="clean accuracy of the linear probe"),
    "robust (attack)": st.column_config.NumberColumn(
        "robust (attack)", format="%.3f", help="empirical robust accuracy: not broken by the end-to-end attack"),
    "bound": st.column_config.NumberColumn(
        "bound", format="%.3f", help="fraction of points with margin ρ(x) > Δ(x): a prediction, not a certificate"),
    "mean Δ": st.column_config.NumberColumn("mean Δ", format="%.3f", help="mean feature shift (L2 feature units)"),
    "n": st.column_config.NumberColumn("n", help="test points"),
}


# ---------------------------------------------------------------- session and sidebar

def init_session() -> None:
    """Session-state defaults, set once per session (widgets then own their keys)."""
    for key, value in state.session_defaults().items():
        st.session_state.setdefault(key, value)
    choices = state.backbone_choices()
    if st.session_state["backbone"] not in choices:  # a backbone disappeared: fall back to the default
        st.session_state["backbone"] = state.default_backbone(choices)
    known = set(rtcore.list_tasks())
    st.session_state["tasks"] = [t for t in st.session_state["tasks"] if t in known]
    options = state.sample_size_options()
    if st.session_state["n"] not in options:
        st.session_state["n"] = state.default_n()


def _reset_eps() -> None:
    st.session_state["eps"] = state.default_eps(st.session_state["norm"])


def sidebar() -> None:
    """The controls shared by every page: backbone, eps, norm, tasks, sample size, attack."""
    sb = st.sidebar
    choices = state.backbone_choices()
    sb.selectbox("Backbone g (frozen)", choices, key="backbone", format_func=state.backbone_label,
                 help="Bundled backbones work offline; timm entries need their pretrained weights "
                      "(Hugging Face cache or download); or upload your own safetensors checkpoint.")
    if st.session_state["backbone"] == state.UPLOAD_CHOICE:
        _upload_controls()
    else:
        st.session_state["upload_ref"] = None
        desc = state.backbone_description(st.session_state["backbone"])
        if desc:
            sb.caption(desc)
    sb.radio("Threat model (norm)", state.NORMS, key="norm", horizontal=True, format_func=state.NORM_LABELS.get,
             on_change=_reset_eps, help="Changing the norm resets ε to that norm's default.")
    sb.slider("ε (pixel units, [0,1])", min_value=0.0, max_value=1.0, step=0.001, format="%.3f", key="eps",
              help="The perturbation budget in the images' own [0,1] pixel scale (8/255 ≈ 0.031).")
    grid = ", ".join(f"{e:g}" for e in state.eps_grid(st.session_state["norm"]))
    sb.caption(f"ε = {state.eps_label(st.session_state['eps'])} · curves use the grid {grid} plus this ε")
    sb.multiselect("Downstream tasks", rtcore.list_tasks(), key="tasks", format_func=state.task_label,
                   help="Default: the tasks that work offline. Tasks marked 'needs download' are skipped "
                        "with a message when their data is not on this machine.")
    sb.select_slider("Test points per task (n)", state.sample_size_options(), key="n",
                     help="A seeded random subset of each task's test split. Larger n: tighter numbers, longer runs.")
    sb.radio("Attack strength", list(state.PRESETS), key="attack", horizontal=True,
             help="\n\n".join(f"**{k}**: {state.attack_summary(k)}" for k in state.PRESETS))
    sb.caption(f"**{st.session_state['attack']}**: {state.attack_summary(st.session_state['attack'])}")


def _upload_controls() -> None:
    sb = st.sidebar
    sb.file_uploader(f"Checkpoint (.safetensors, at most {state.MAX_UPLOAD_MB} MB)", type=["safetensors"],
                     key="upload_file", help="Never unpickled: only safetensors files are accepted.")
    sb.text_input("timm architecture of the checkpoint", key="upload_arch", help="e.g. resnet18, convnext_atto")
    st.session_state["upload_ref"] = None
    st.session_state["upload_error"] = None
    up = st.session_state.get("upload_file")
    if up is None:
        return
    try:
        saved: dict[str, str] = st.session_state.setdefault("upload_paths", {})
        if up.file_id not in saved:
            if up.size > state.MAX_UPLOAD_BYTES:
                raise bb.UploadError(f"{up.name!r} is {up.size / 1e6:.0f} MB, above the {state.MAX_UPLOAD_MB} MB limit")
            saved[up.file_id] = str(bb.save_upload(up.name, up.getvalue()))
        st.session_state["upload_ref"] = bb.upload_ref(st.session_state["upload_arch"], saved[up.file_id], up.name)
    except ValueError as e:  # UploadError is a ValueError; so is an unknown timm architecture
        st.session_state["upload_error"] = str(e)
        sb.error(str(e))


def current_ref() -> bb.BackboneRef | None:
    """The sidebar's backbone as a reference, or None with a message in the page."""
    name = st.session_state["backbone"]
    if name != state.UPLOAD_CHOICE:
        return bb.BackboneRef(name)
    ref = st.session_state.get("upload_ref")
    if ref is None:
        err = st.session_state.get("upload_error")
        if err:
            st.error(f"The uploaded checkpoint cannot be used: {err}")
        else:
            st.info("Upload a .safetensors checkpoint and give its timm architecture in the sidebar.")
    return ref


# ---------------------------------------------------------------- backbones

@st.cache_resource(show_spinner="Loading the backbone (once per server process)…", max_entries=8)
def _cached_backbone(name: str, weights: str | None, label: str | None) -> Backbone:
    """Loaded once per process and shared by every session: never mutate it."""
    return bb.load_backbone(bb.BackboneRef(name, weights, label))


def load(ref: bb.BackboneRef) -> Backbone | None:
    """The backbone of ``ref``, or None after drawing a clear error message."""
    try:
        return _cached_backbone(ref.name, ref.weights, ref.label)
    except BackboneUnavailableError as e:
        st.error(f"**Backbone {ref.display!r} is not available here.** {e}")
    except CheckpointError as e:
        st.error(f"**The checkpoint does not fit.** {e}")
    except ValueError as e:
        st.error(f"**Backbone {ref.display!r}:** {e}")
    except Exception as e:  # noqa: BLE001 - the page shows a message, never a traceback
        st.error(f"Loading {ref.display!r} failed unexpectedly ({type(e).__name__}): {e}")
    return None


# ---------------------------------------------------------------- evaluations

@dataclass
class Run:
    """A request, its job, the snapshot the page draws, and where the progress bar lives."""

    request: jobs.EvalRequest
    job: jobs.EvaluationJob
    snapshot: jobs.Snapshot
    status: Any
    device: str = ""


def evaluate(refs: Sequence[bb.BackboneRef], slot: str) -> Run | None:
    """Start or attach to the evaluation of the sidebar selection for ``refs``; None on bad input."""
    if not st.session_state["tasks"]:
        st.warning("Choose at least one downstream task in the sidebar.")
        return None
    loaded = {}
    for ref in refs:
        g = load(ref)
        if g is None:
            return None
        loaded[ref] = g
    try:
        request = jobs.make_request(list(refs), st.session_state["tasks"], st.session_state["eps"],
                                  st.session_state["norm"], st.session_state["n"], st.session_state["attack"])
    except ValueError as e:
        st.error(str(e))
        return None
    token = st.session_state["session_token"]
    ctx = get_script_run_ctx()
    jobs.register_session(token, ctx.session_id if ctx is not None else None)
    job = jobs.submit(request, loaded, owner=f"{token}:{slot}")
    status = st.empty()
    run = Run(request, job, job.snapshot(), status, bb.describe_device(next(iter(loaded.values()))))
    _draw_status(run)
    return run


def _draw_status(run: Run) -> None:
    """Progress bar (in ``run.status``) while running; errors and skipped tasks below it."""
    snap = run.snapshot
    if not snap.done:
        fraction, text = run.job.progress()
        run.status.progress(fraction, text=text)
    elif not snap.errors and not snap.cancelled:
        run.status.caption(f"{READY} {len(snap.summary)} (task, ε) results, computed in {snap.elapsed:.0f} s "
                           f"on {run.device} and kept in the on-disk cache.")
    elif snap.cancelled:
        run.status.caption("Stopped: a newer selection replaced this one; finished steps are cached.")
    elif snap.errors:
        for err in snap.errors:
            st.error(err)
        if st.button("Try again", key="retry_job"):
            jobs.JOBS.discard(run.request)
            st.rerun()
    for w in snap.warnings:
        st.warning(w)


def follow(run: Run) -> None:
    """While the job runs, update its progress bar; rerun the page when a step finishes.

    If the user leaves the page, the job keeps running in the background (its finished
    steps are cached) and the next visit attaches to it.
    """
    job, version = run.job, run.snapshot.version
    if run.snapshot.done:
        return
    while not job.wait_for_change(version, timeout=POLL_S):
        fraction, text = job.progress()
        run.status.progress(fraction, text=text)
    st.rerun()


def main_run() -> tuple[bb.BackboneRef, Run]:
    """The sidebar's backbone and its evaluation run, with the attack-estimate note; stops the
    page when there is nothing to show (the sidebar already says why)."""
    ref = current_ref()
    run = evaluate([ref], slot="main") if ref is not None else None
    if ref is None or run is None:
        st.stop()
    bound_note()
    return ref, run


def waiting_note(run: Run) -> None:
    """What to expect before the first numbers arrive."""
    st.info("Computing the first task… each finished task and ε appears here as soon as it is ready "
            "(results are cached on disk: a second visit is instant).")


def chart(fig: go.Figure, key: str) -> None:
    """A plotly figure in the Streamlit theme (readable in light and dark mode)."""
    st.plotly_chart(fig, theme="streamlit", key=key, config={"displaylogo": False})


def downloads(run: Run, prefix: str) -> None:
    """CSV downloads of the summary and the per-sample table, and the reproducing command."""
    snap, req = run.snapshot, run.request
    st.markdown("**Download and reproduce**")
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button("Summary CSV", data=lambda: exports.csv_bytes(snap.summary, req),
                       file_name=exports.download_name(req, "summary"), mime="text/csv", key=f"{prefix}_dl_summary",
                       on_click="ignore", icon=":material/download:")
    c2.download_button("Per-sample CSV", data=lambda: exports.csv_bytes(snap.samples, req),
                       file_name=exports.download_name(req, "samples"), mime="text/csv", key=f"{prefix}_dl_samples",
                       on_click="ignore", icon=":material/download:")
    st.caption("The same numbers from the command line (shared on-disk cache, so it is instant after the dashboard):")
    st.code(exports.cli_text(req), language="bash", wrap_lines=True)


def bound_note() -> None:
    """The page-level statement that the bound is a prediction, not a certificate."""
    st.caption(f"⚠️ {state.BOUND_NOTE}")


CARD_COLUMNS: dict[str, Any] = {
    "upstream clean acc": st.column_config.NumberColumn("upstream clean acc", format="%.3f"),
    "upstream robust acc": st.column_config.NumberColumn(
        "upstream robust acc", format="%.3f", help="robust accuracy on the upstream task at the card's ε and norm"),
    "train ε": st.column_config.NumberColumn("train ε", format="%g"),
    "at ε": st.column_config.NumberColumn("at ε", format="%g"),
}


def activate(flag: str) -> None:
    """Button callback: set a session flag (e.g. opt in to a long computation)."""
    st.session_state[flag] = True


def persistent_multiselect(label: str, options: Sequence[str], key: str, **kw: Any) -> list[str]:
    """A multiselect whose choice survives page switches (widget state is dropped when a page
    does not draw the widget, so the value lives under ``key`` and the widget under ``key + '_w'``)."""
    wkey = f"{key}_w"
    st.session_state[wkey] = [o for o in st.session_state.get(key, []) if o in options]

    def keep() -> None:
        st.session_state[key] = st.session_state[wkey]

    return st.multiselect(label, options, key=wkey, on_change=keep, **kw)


TOY_EXAMPLES: dict[str, dict[str, float | str]] = {
    "criterion is loose": {"toy_a11": 1.5, "toy_a12": 0.5, "toy_a21": 0.3, "toy_a22": 0.8, "toy_x1": 0.6,
                           "toy_x2": 0.4, "toy_eps": 0.2, "toy_norm": "linf", "toy_angle": -30, "toy_offset": -0.4},
    "worst direction hits the boundary": {"toy_a11": 1.5, "toy_a12": 0.5, "toy_a21": 0.3, "toy_a22": 0.8,
                                          "toy_x1": 0.6, "toy_x2": 0.4, "toy_eps": 0.2, "toy_norm": "linf",
                                          "toy_angle": 30, "toy_offset": -0.9},
    "isotropic g (A = I, l2)": {"toy_a11": 1.0, "toy_a12": 0.0, "toy_a21": 0.0, "toy_a22": 1.0, "toy_x1": 0.5,
                                "toy_x2": 0.5, "toy_eps": 0.2, "toy_norm": "l2", "toy_angle": 45, "toy_offset": -0.5},
    "contracting g (robust representation)": {"toy_a11": 0.4, "toy_a12": 0.1, "toy_a21": -0.1, "toy_a22": 0.3,
                                              "toy_x1": 0.7, "toy_x2": 0.6, "toy_eps": 0.3, "toy_norm": "linf",
                                              "toy_angle": 20, "toy_offset": -0.2},
}


def _apply_example(name: str) -> None:
    st.session_state.update(TOY_EXAMPLES[name])


def toy_examples() -> None:
    """Buttons that set the theory page's sliders to instructive configurations."""
    for k, v in TOY_EXAMPLES[next(iter(TOY_EXAMPLES))].items():
        st.session_state.setdefault(k, v)
    cols = st.columns(len(TOY_EXAMPLES))
    for i, (col, name) in enumerate(zip(cols, TOY_EXAMPLES, strict=False)):
        col.button(name, key=f"toy_example_{i}", on_click=_apply_example, args=(name,), width="stretch")


def toy_verdict(toy: toy.LinearToy) -> str:
    """One sentence that explains the current picture."""
    dual = "ε‖Aᵀw‖₁" if toy.norm == "linf" else "ε‖Aᵀw‖₂"
    if not toy.correct:
        return "g(x) lies on the wrong side of the boundary (ρ ≤ 0): the point is misclassified even without attack."
    if toy.certified:
        return (f"ρ = {toy.rho:.3f} > Δ = {toy.delta:.3f}: the dashed circle stays on the correct side, so no point of "
                "the ε-ball can be misclassified; the criterion certifies x (and the exact answer agrees).")
    if toy.robust:
        return (f"ρ = {toy.rho:.3f} ≤ Δ = {toy.delta:.3f}, yet the exact answer is *robust*: the image of the ball "
                f"(shaded) does not reach the boundary because its farthest direction is not the boundary's normal "
                f"(needed: ρ > {dual} = {toy.required:.3f}). The criterion is conservative here: a bound, not an "
                "equivalence.")
    return (f"ρ = {toy.rho:.3f} ≤ {dual} = {toy.required:.3f}: part of the shaded image crosses the boundary, "
            "so an attacker can flip the prediction; the criterion rightly does not certify x.")
