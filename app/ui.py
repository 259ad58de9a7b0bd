"""Streamlit glue shared by app.py and the pages: session state, cached backbones, following a job,
the status line, downloads.

Everything computed comes from the modules of :mod:`app`; everything drawn from :mod:`app.figures`.
The sidebar's controls are in :mod:`app.sidebar`.
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
from app import exports, jobs, registry, state
from app.plan import EvalRequest, make_request
from rtcore import Backbone, BackboneUnavailableError, CheckpointError

POLL_S = 0.3
READY = "✓ All results ready:"  # the browser test and scripts/time_to_first_plot.py wait for this text
#: keys whose values must survive pages that do not draw their widget (Streamlit drops the state of
#: a keyed widget that a run does not draw; re-assigning the value keeps it)
PERSISTENT = ("backbone", "norm", "eps", "tasks", "n", "attack", "upload_arch", "probes_task")
ACCURACY_COLUMNS: dict[str, Any] = {
    "clean": st.column_config.NumberColumn("clean", format="%.3f", help="clean accuracy of the linear probe"),
    "robust (attack)": st.column_config.NumberColumn(
        "robust (attack)", format="%.3f", help="empirical robust accuracy: not broken by any attack tried"),
    "bound": st.column_config.NumberColumn(
        "bound", format="%.3f", help="fraction of points with margin ρ(x) > Δ(x): a prediction, not a certificate"),
    "bound Δ_P": st.column_config.NumberColumn(
        "bound Δ_P", format="%.3f",
        help="bound in the head subspace: fraction with ρ(x) > Δ_P(x), the shift inside the span of the head's "
             "weight differences (empty until the head-subspace attack has run)"),
    "mean Δ": st.column_config.NumberColumn("mean Δ", format="%.3f",
                                            help="mean feature shift ‖g(x′) − g(x)‖₂, in the backbone's feature units"),
    "n": st.column_config.NumberColumn("n", help="test points"),
}


# ---------------------------------------------------------------- session

def init_session() -> None:
    """Session-state defaults, set once per session; values that must outlive a page are re-assigned."""
    for key, value in state.session_defaults().items():
        st.session_state.setdefault(key, value)
    for key in PERSISTENT:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    choices = state.backbone_choices()
    if st.session_state["backbone"] not in choices:  # a backbone disappeared: fall back to the default
        st.session_state["backbone"] = state.default_backbone(choices)
    known = set(rtcore.list_tasks())
    st.session_state["tasks"] = [t for t in st.session_state["tasks"] if t in known]
    if st.session_state["n"] not in state.sample_size_options():
        st.session_state["n"] = state.default_n()
    if st.session_state["attack"] not in state.STRENGTHS:
        st.session_state["attack"] = state.default_attack()
    extras = st.session_state["extra_eps"]
    options = state.eps_options(st.session_state["norm"], extras.get(st.session_state["norm"], []))
    st.session_state["eps"] = state.snap_eps(st.session_state["eps"], options)


def extras() -> tuple[float, ...]:
    """The eps the user added to the current norm's grid."""
    return tuple(st.session_state["extra_eps"].get(st.session_state["norm"], []))


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
    """A request, its job, the snapshot the page draws, the cursor eps, and where the progress bar lives."""

    request: EvalRequest
    job: jobs.EvaluationJob
    snapshot: jobs.Snapshot
    status: Any
    eps: float
    device: str = ""


def evaluate(refs: Sequence[bb.BackboneRef], slot: str, tasks: Sequence[str] | None = None,
             probes: Sequence[str] = ("logistic",)) -> Run | None:
    """Start or attach to the evaluation of the sidebar selection for ``refs``; None on bad input.

    The eps cursor is not part of the request: moving it re-draws the same job's results."""
    tasks = list(st.session_state["tasks"] if tasks is None else tasks)
    if not tasks:
        st.warning("Choose at least one downstream task in the sidebar.")
        return None
    loaded = {}
    for ref in refs:
        g = load(ref)
        if g is None:
            return None
        loaded[ref] = g
    try:
        request = make_request(list(refs), tasks, st.session_state["norm"], st.session_state["n"],
                               st.session_state["attack"], probes=tuple(probes), extras=extras())
    except ValueError as e:
        st.error(str(e))
        return None
    token = st.session_state["session_token"]
    ctx = get_script_run_ctx()
    registry.register_session(token, ctx.session_id if ctx is not None else None)
    job = registry.submit(request, loaded, owner=f"{token}:{slot}")
    status = st.empty()
    run = Run(request, job, job.snapshot(), status, float(st.session_state["eps"]),
              bb.describe_device(next(iter(loaded.values()))))
    draw_status(run)
    return run


def draw_status(run: Run) -> None:
    """Progress bar (in ``run.status``) while running; the ready line, errors and skipped tasks after."""
    snap = run.snapshot
    if not snap.done:
        fraction, text = run.job.progress()
        run.status.progress(fraction, text=f"job #{run.job.id} · {text}")
    elif not snap.errors and not snap.cancelled:
        run.status.caption(f"{READY} {results_text(snap)} in {jobs.fmt_seconds(snap.elapsed)} on {run.device} "
                           f"(finished steps are kept in the on-disk cache) · job #{run.job.id}. Moving ε only moves "
                           "the cursor: no new computation.")
    elif snap.cancelled:
        run.status.caption("Stopped: a newer selection replaced this one; finished steps are cached.")
    elif snap.errors:
        for err in snap.errors:
            st.error(err)
        if st.button("Try again", key="retry_job"):
            registry.JOBS.discard(run.request)
            st.rerun()
    for w in snap.warnings:
        st.warning(w)
    if not snap.done and snap.preliminary:
        st.caption("Preliminary: the head-subspace and loss attacks run last; until then 'bound (head subspace)' "
                   "and the loss bounds are missing and robust accuracy may still drop slightly.")


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
        run.status.progress(fraction, text=f"job #{job.id} · {text}")
    st.rerun()


def main_run() -> tuple[bb.BackboneRef, Run]:
    """The sidebar's backbone and its evaluation run, with the attack-estimate note; stops the
    page when there is nothing to show (the sidebar or the page already says why)."""
    ref = current_ref()
    run = evaluate([ref], slot="main") if ref is not None else None
    if ref is None or run is None:
        st.stop()
    bound_note()
    return ref, run


def waiting_note(run: Run) -> None:
    """What to expect before the first numbers arrive."""
    st.info("Fitting the first linear probe… every finished task and ε appears here as soon as it is ready: "
            "clean accuracy first, then ε = " + state.eps_label(run.request.groups()[1][0], run.request.norm) +
            " for every task, then the rest of the grid (results are cached on disk: a second visit is instant).")


def chart(fig: go.Figure, key: str) -> None:
    """A plotly figure in the Streamlit theme (readable in light and dark mode)."""
    st.plotly_chart(fig, theme="streamlit", key=key, config={"displaylogo": False})


def downloads(run: Run, prefix: str) -> None:
    """CSV downloads of the final tables and the reproducing script (shown and downloadable)."""
    req = run.request
    st.markdown("**Download and reproduce**")
    tables = exports.export_tables(run.job) if run.snapshot.done else None
    if tables is None:
        st.caption("The downloads appear when every step has finished (until then the numbers can still change).")
        return
    summary, samples = tables
    c1, c2, c3, _ = st.columns([1, 1, 1, 2])
    c1.download_button("Summary CSV", data=exports.csv_bytes(summary), file_name=exports.download_name(req, "summary"),
                       mime="text/csv", key=f"{prefix}_dl_summary", on_click="ignore", icon=":material/download:")
    c2.download_button("Per-sample CSV", data=lambda: exports.csv_bytes(samples),
                       file_name=exports.download_name(req, "samples"), mime="text/csv", key=f"{prefix}_dl_samples",
                       on_click="ignore", icon=":material/download:")
    script = exports.repro_script(run.job)
    c3.download_button("Reproduce (.sh)", data=script.encode(), file_name=exports.download_name(req, "reproduce", "sh"),
                       mime="text/x-shellscript", key=f"{prefix}_dl_script", on_click="ignore",
                       icon=":material/terminal:")
    st.caption("Plain CSVs (`pandas.read_csv` reads them). The command below reproduces them: every ε is attacked "
               "on its own, so one run gives the numbers the dashboard computed in stages. On an empty cache it "
               "writes the same per-sample CSV byte for byte; with the dashboard's cache it is instant.")
    st.code(script, language="bash", wrap_lines=True)


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
    """A multiselect whose choice survives page switches (the value lives under ``key``, the widget
    under ``key + '_w'``)."""
    wkey = f"{key}_w"
    st.session_state[wkey] = [o for o in st.session_state.get(key, []) if o in options]

    def keep() -> None:
        st.session_state[key] = st.session_state[wkey]

    return st.multiselect(label, options, key=wkey, on_change=keep, **kw)


def plural(k: int, word: str, prefix: str = "") -> str:
    """``1 task``, ``5 backbones``."""
    return f"{prefix}{k} {word}{'' if k == 1 else 's'}"


def results_text(snap: jobs.Snapshot) -> str:
    """``5 tasks × 6 ε`` (with backbones and probes when there are several)."""
    df = snap.summary
    parts = [plural(df[c].nunique(), w) for c, w in (("backbone", "backbone"), ("probe", "probe")) if df[c].nunique() > 1]
    parts += [plural(df["task"].nunique(), "task"), f"{df['eps'].nunique()} ε"]
    return " × ".join(parts)
