"""Streamlit glue shared by app.py and the pages: session state, shared backbones, following a job (its
progress bar, the status line, re-runs throttled while it computes), figures built once per result and
shared by every session, tables with intervals, downloads.

Computing is the library's (through :mod:`app.jobs`); drawing is :mod:`app.figures`; the sidebar is
:mod:`app.sidebar`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

import rtcore
from rtcore import Backbone, BackboneUnavailableError, CheckpointError
from rtcore.config import default_cache_dir, eps_text
from rtcore.errors import CacheDirError
from rtcore.export import csv_bytes
from rtcore.models.ref import BackboneRef
from rtcore.models.wrapper import device_name
from rtcore.runs import EvalJob, EvalRequest, Snapshot, fmt_seconds, selection
from rtcore.runs.reproduce import reproduce_script, spec_download_name
from rtcore.tables import at_eps, head_masked, in_order

from . import jobs, state
from .figures import MISSING, PENDING, ci_text
from .texts import text, texts

READY = "✓ All results ready:"  # the browser test and scripts/time_to_first_plot.py wait for this text
#: keys whose values must survive pages that do not draw their widget (Streamlit drops the state of a keyed
#: widget that a run does not draw; re-assigning the value keeps it)
PERSISTENT = ("backbone", "norm", "eps", "tasks", "n", "attack", "probe", "upload_arch", "probes_task")
#: the columns of the tables at one eps (:func:`text_table`)
TABLE_COLUMNS = {"clean": ("clean_acc", "ci"), "robust (attack)": ("robust_acc", "ci"), "bound": ("bound", "ci"),
                 "bound Δ_P": ("bound_head", "ci"), "mean Δ": ("mean_delta", ".3f")}


# ---------------------------------------------------------------- session

def init_session() -> None:
    """Session-state defaults, set once per session; values that must outlive a page are re-assigned."""
    for key, value in state.session_defaults().items():
        st.session_state.setdefault(key, value)
    for key in PERSISTENT:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    st.session_state.update(selection.checked(st.session_state.to_dict(), task_choices(), (state.UPLOAD_CHOICE,)))


def task_choices() -> list[str]:
    """The registered tasks, then the tasks this session added from its own data."""
    return [*rtcore.list_tasks(), *st.session_state.get("user_tasks", [])]


def current_ref() -> BackboneRef | None:
    """The sidebar's backbone as a reference, or None with a message in the page."""
    name = st.session_state["backbone"]
    if name != state.UPLOAD_CHOICE:
        return BackboneRef(name)
    ref = st.session_state.get("upload_ref")
    if ref is None:
        err = st.session_state.get("upload_error")
        if err:
            st.error(f"The uploaded checkpoint cannot be used: {err}")
        else:
            st.info("Upload a .safetensors checkpoint and give its timm architecture in the sidebar.")
    return ref


# ---------------------------------------------------------------- backbones and evaluations

def load(ref: BackboneRef) -> Backbone | None:
    """The backbone of ``ref`` (loaded once per process, shared), or None after drawing a message naming the problem."""
    try:
        return jobs.cached_backbone(ref)
    except BackboneUnavailableError as e:
        st.error(f"**Backbone {ref.display!r} is not available here.** {e}")
    except CheckpointError as e:
        st.error(f"**The checkpoint does not fit.** {e}")
    except ValueError as e:
        st.error(f"**Backbone {ref.display!r}:** {e}")
    except Exception as e:  # noqa: BLE001 - the page shows a message, never a traceback
        st.error(f"Loading {ref.display!r} failed unexpectedly ({type(e).__name__}): {e}")
    return None


@dataclass
class PageJob:
    """A request, its job, the snapshot the page draws, the cursor eps and the device it computes on."""

    request: EvalRequest
    job: EvalJob
    snapshot: Snapshot
    eps: float
    device: str = ""


def request_for(refs: Sequence[BackboneRef], tasks: Sequence[str], probes: Sequence[str] = ("logistic",),
                sanity: bool = False) -> EvalRequest:
    """The request of the sidebar's selection (:func:`rtcore.runs.selection.request_of`)."""
    return selection.request_of(st.session_state, refs, tasks, probes, sanity=sanity,
                                cache_dir=str(default_cache_dir()))


def evaluate(refs: Sequence[BackboneRef], slot: str, tasks: Sequence[str] | None = None,
             probes: Sequence[str] = ("logistic",), frame: Callable[[Snapshot], None] | None = None) -> PageJob | None:
    """Start or attach to the evaluation of the sidebar selection for ``refs``; None (with a message) on bad
    input. The eps cursor is not part of the request: moving it re-draws the same job's results. While it has no
    results, it waits up to :data:`app.jobs.FIRST_WAIT_S` for a warm cache's (drawn in this run, not after a
    rerun), showing ``frame(snapshot)`` meanwhile (the empty frame of the page's first chart: the browser gets its
    chart code ready)."""
    tasks = list(st.session_state["tasks"] if tasks is None else tasks)
    if not tasks:
        st.warning("Choose at least one downstream task in the sidebar.")
        return None
    tried = {ref: load(ref) for ref in refs}  # a message for each one that cannot be used
    loaded = {ref: g for ref, g in tried.items() if g is not None}
    if len(loaded) < len(tried):
        return None
    try:
        request = request_for(refs, tasks, probes)
    except (ValueError, CacheDirError) as e:
        st.error(str(e))
        return None
    job = jobs.submit(request, loaded, slot)
    snap = job.snapshot()
    if snap.empty and not snap.done:
        holder = st.empty()
        if frame is not None:
            with holder.container():
                frame(snap)
        snap = jobs.first_snapshot(job, snap)
        holder.empty()
    run = PageJob(request, job, snap, float(st.session_state["eps"]), device_name(next(iter(loaded.values())).device))
    draw_status(run)
    return run


def draw_status(run: PageJob) -> None:
    """While the job runs, its progress bar (the page reruns as it advances, :func:`app.jobs.watch`); after, the
    ready line; errors and skipped tasks."""
    snap, state_ = run.snapshot, run.snapshot.state
    jobs.watch(run.job, snap.version, lambda unit: jobs.unit_label(unit, run.request), eager=snap.empty)
    if not snap.done:
        added = [e for e in run.request.priority if snap.at_eps(e).empty]
        if added:
            st.caption(state.computing_text(added, run.request.norm))
    elif state_.phase == "done":
        st.caption(f"{READY} {results_text(snap)} in {fmt_seconds(state_.progress.seconds)} on {run.device} "
                   f"· kept in the on-disk cache · job #{run.job.id}. Moving ε only moves the cursor: "
                   "no new computation.")
    elif state_.cancelled:
        st.caption("Stopped: a newer selection replaced this one; finished steps are cached.")
    for err in snap.errors:
        st.error(jobs.error_message(err))
    if snap.errors and st.button("Try again", key="retry_job"):
        jobs.SCHEDULER.discard(run.request.key)
        st.rerun()
    for warning in dict.fromkeys(f"Task {task!r} skipped: {e}" for (_, task), e in state_.skipped):
        st.warning(warning)
    if not snap.done and snap.preliminary:
        st.caption(text("preliminary"))


def prestart() -> None:
    """Start (or attach to) the sidebar selection's evaluation (slot ``main``) before the sidebar draws, so a warm
    cache is read while it does; draws nothing: :func:`main_job` attaches to the job and shows any problem."""
    ref = current_ref() if st.session_state["backbone"] != state.UPLOAD_CHOICE else None
    if ref is None or not st.session_state["tasks"]:
        return
    try:
        request = request_for([ref], st.session_state["tasks"], (st.session_state["probe"],))
        jobs.submit(request, {ref: jobs.cached_backbone(ref)}, "main")
    except (ValueError, CacheDirError, BackboneUnavailableError, CheckpointError):
        return  # main_job draws the message


def follow(run: PageJob) -> None:
    """At the end of a page: where no server reruns the status line (AppTest), wait for the job and rerun."""
    jobs.settle(run.job, run.snapshot.version)


def main_job(frame: Callable[[Snapshot], None] | None = None) -> tuple[BackboneRef, PageJob]:
    """The sidebar's backbone and its evaluation (slot ``main``; ``frame``: see :func:`evaluate`); stops the page
    when there is nothing to show."""
    ref = current_ref()
    run = evaluate([ref], slot="main", probes=(st.session_state["probe"],), frame=frame) if ref is not None else None
    if ref is None or run is None:
        st.stop()
    bound_note()
    return ref, run


def waiting_note(run: PageJob) -> None:
    st.info(text("waiting", eps=eps_text(run.request.first[0], run.request.norm)))


# ---------------------------------------------------------------- tables

def text_table(rows: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """``rows`` as text, one column per title: ``(column, "ci")`` a share and its 95 % interval (:func:`ci_text`;
    ``bound_head`` only where the head-subspace attack has run), ``(column, format)`` a number (a dash where it is
    missing), ``(column, "")`` the value as it is."""
    rows = head_masked(rows)
    missing = pd.Series(float("nan"), rows.index)
    return pd.DataFrame({title: ci_text(rows, col) if fmt == "ci" else list(rows.get(col, missing)) if not fmt else
                         [MISSING if pd.isna(v) else f"{v:{fmt}}" for v in rows.get(col, missing)]
                         for title, (col, fmt) in columns.items()})


def display_table(summary: pd.DataFrame, eps: float, tasks: Sequence[str], by: str = "task") -> pd.DataFrame:
    """The numbers at one eps with 95 % intervals, one row per task (and ``by``); a task not computed at this eps
    yet reads "computing…" (its clean accuracy once known)."""
    keys = {k: (k, "") for k in ("task",) if by == "task"} or {by: (by, ""), "task": ("task", "")}
    out = text_table(at_eps(summary, eps), {**keys, **TABLE_COLUMNS})
    clean = text_table(at_eps(summary, 0.0), {"task": ("task", ""), "clean": ("clean_acc", "ci")})
    return in_order(out, "task", tasks, PENDING, clean.drop_duplicates("task")) if by == "task" else out


def table(df: pd.DataFrame, key: str | None = None, **kw: Any) -> None:
    """A static table (plain HTML: light for a browser, large on a projector; the interactive grid's code is
    never loaded); with a ``key``, the column names assets/text/dashboard.toml explains are explained below it."""
    st.table(df, hide_index=True)
    explained = texts()["column_help"]
    helps = [f"*{c}*: {explained[c]}" for c in df.columns if c in explained]
    if helps and key is not None:
        st.caption(" · ".join(helps))


# ---------------------------------------------------------------- downloads

def downloads(run: PageJob, prefix: str) -> None:
    """CSV downloads of the finished job and the reproducing script (shown and downloadable)."""
    st.markdown("**Download and reproduce**")
    export = run.job.export() if run.snapshot.done else None
    if export is None:
        st.caption("The downloads appear when every step has finished (until then the numbers can still change).")
        return
    summary, samples, parts = export
    specs = run.request.specs
    script = reproduce_script(specs, parts)
    download_row(prefix, [("Summary CSV", lambda: csv_bytes(summary), spec_download_name(specs, "summary")),
                          ("Per-sample CSV", lambda: csv_bytes(samples), spec_download_name(specs, "samples")),
                          ("Reproduce (.sh)", script.encode(), spec_download_name(specs, "reproduce", "sh"))])
    st.caption(text("downloads"))
    if st.toggle("Show the reproducing script", key=f"{prefix}_show_script"):
        st.code(script, language="bash", wrap_lines=True)


MIME = {"csv": "text/csv", "sh": "text/x-shellscript", "toml": "application/toml"}


def download_row(prefix: str, files: Sequence[tuple[str, Any, str]]) -> None:
    """Download buttons side by side: (label, bytes or a function that makes them, file name) each."""
    for col, (label, data, name) in zip(st.columns([1] * len(files) + [2]), files):
        ext = name.rsplit(".", 1)[-1]
        col.download_button(label, data=data, mime=MIME[ext], file_name=name, on_click="ignore",
                            key=f"{prefix}_dl_{label.split()[0].lower()}",
                            icon=":material/terminal:" if ext == "sh" else ":material/download:")


def bound_note() -> None:
    st.caption(f"⚠️ {text('bound_note')}")


def plural(k: int, word: str, prefix: str = "") -> str:
    return f"{prefix}{k} {word}{'' if k == 1 else 's'}"


def results_text(snap: Snapshot) -> str:
    """``5 tasks × 6 ε`` (with backbones and probes when there are several)."""
    df = snap.summary
    if df.empty:
        return "no results"
    parts = [plural(df[c].nunique(), w) for c, w in (("backbone", "backbone"), ("probe", "probe")) if df[c].nunique() > 1]
    return " × ".join([*parts, plural(df["task"].nunique(), "task"), f"{df['eps'].nunique()} ε"])
