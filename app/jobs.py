"""The dashboard's side of the library's scheduler (:mod:`rtcore.runs.scheduler`, :mod:`rtcore.runs.jobs`): the
only module of the app that deals with threads.

Jobs run on the process's scheduler, shared by every session asking the same; a session's pages are owners
(:func:`owner`), and :func:`session_alive` tells the scheduler which owners' browser tabs have closed. A page
waiting on a job draws :func:`watch`: a fragment that reads the job's version every :data:`POLL_S`
(:data:`EAGER_POLL_S` while the page shows no results; a cheap read) and reruns the whole page when it changed
(at once for the first results and at the end, else at most every :data:`RERUN_GAP_S`), and draws nothing more
once the page shows the finished job: every session converges, whichever session started the job. Without a
server (AppTest, a bare script) nobody reruns fragments, so :func:`settle` waits for the job there instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from rtcore import Backbone
from rtcore.config import eps_text
from rtcore.errors import RtcoreError
from rtcore.models.ref import BackboneRef
from rtcore.models.uploads import load_ref
from rtcore.runs import EvalJob, EvalRequest, Job, JobState, Snapshot, TransferJob, TransferRequest, Unit, \
    default_scheduler, fmt_seconds


POLL_S = 1.0  # how often a page waiting on a job reads its version
EAGER_POLL_S = 0.25  # ... while the page shows no results yet (its first chart waits for this)
FIRST_WAIT_S = 1.0  # a page with nothing to show waits this long for a warm cache's first results (no empty frame)
RERUN_GAP_S = 3.0  # while a job computes, a page reruns at most this often (its first results and the end at once)
#: what a unit does, in the progress line (before it reports a stage, it may be all cached)
UNIT_TEXT = {"fit": "probe fit and clean accuracy", "attack": "feature and end-to-end attacks",
             "head_loss": "head-subspace and loss attacks", "sanity": "sanity checks"}
#: the library's stage names in the progress line; a stage is only reported while it computes
STAGE_TEXT = {"linear probe": "fitting the linear probe", "feature attack": "feature attack (Δ)",
              "end-to-end attack": "end-to-end attack", "head-subspace attack": "head-subspace attack (Δ_P)",
              "loss attack": "cross-entropy attack (loss)", "sanity checks": "sanity checks",
              "fine-tuning": "fine-tuning", "reading cached results": "read from the cache", "done": "stored"}


def session_alive(owner: str) -> bool:
    """The owners' liveness check: False only when Streamlit's runtime knows that the owner's session (an owner is
    ``"{session id}|{session token}:{slot}"``) has ended; without a runtime (AppTest, plain Python), or with one
    that cannot tell, alive."""
    try:
        from streamlit import runtime

        active = runtime.get_instance().is_active_session(owner.split("|", 1)[0]) if runtime.exists() else None
    except Exception:  # noqa: BLE001 - no runtime, or one that cannot answer: assume the session lives
        return True
    return active is not False


SCHEDULER = default_scheduler()
SCHEDULER.is_alive = session_alive


def owner(slot: str) -> str:
    """This session's owner name for ``slot``: its Streamlit session (whose end releases its jobs) and its token."""
    ctx = get_script_run_ctx()
    return f"{ctx.session_id if ctx is not None else ''}|{st.session_state['session_token']}:{slot}"


def submit(request: EvalRequest, loaded: Mapping[BackboneRef, Backbone], slot: str) -> EvalJob:
    """Start or attach to the job of ``request`` (:meth:`rtcore.runs.EvalJob.maker`) for this session's ``slot``."""
    return SCHEDULER.submit(request.key, EvalJob.maker(request, loaded), owner(slot))  # type: ignore[return-value]


def first_snapshot(job: EvalJob, snap: Snapshot) -> Snapshot:
    """After ``snap`` with no results: the job's snapshot once its first step ended, or ``snap`` after
    :data:`FIRST_WAIT_S` (a warm cache's results are then drawn in this run, not after a rerun)."""
    return job.snapshot() if job.wait(snap.version, FIRST_WAIT_S) else snap


def submit_transfer(request: TransferRequest, g: Backbone) -> TransferJob:
    """Start or attach to the comparison of ``request`` (slot ``transfer``)."""
    make: Callable[[Job | None, float], Job] = lambda old, delay: TransferJob(request, g, delay=delay)
    return SCHEDULER.submit(request, make, owner("transfer"))  # type: ignore[return-value]


# ---------------------------------------------------------------- backbones: one per process, shared

_LOADING = threading.Lock()


@st.cache_resource(show_spinner="Loading the backbone (once per server process)…", max_entries=8,
                   hash_funcs={BackboneRef: repr})  # its fields, without Streamlit's deep copy of a dataclass
def cached_backbone(ref: BackboneRef) -> Backbone:
    """Loaded once per process and shared by every session and executor: never mutate it."""
    with _LOADING:  # one load at a time: a cold server's first visitors share it instead of racing
        return load_ref(ref)


# ---------------------------------------------------------------- following a job

def unit_label(unit: Unit, request: EvalRequest) -> str:
    """``shapes · ε 4/255 · feature and end-to-end attacks`` (with the backbone and probe when several)."""
    specs = request.specs
    who = (f"{unit.spec.backbone.display} · " if len({s.backbone for s in specs}) > 1 else "") + \
        (f"probe {unit.spec.probe} · " if len({s.probe for s in specs}) > 1 else "")
    eps = [e for e in unit.eps if e > 0]
    where = f" · ε {', '.join(eps_text(e, unit.spec.norm) for e in eps)}" if eps and unit.stage != "sanity" else ""
    return f"{who}{unit.task}{where} · {UNIT_TEXT[unit.stage]}"


def progress_text(state: JobState, describe: Callable[[Any], str]) -> str:
    """``step 3/25 · shapes · ε 4/255 · … · feature attack (Δ) · 12 s elapsed, about 40 s left``."""
    p = state.progress
    if state.phase == "waiting" and state.others:
        now = f"waiting for the device: {state.others} other job{'s' if state.others > 1 else ''} take turns with it"
    else:
        now = STAGE_TEXT.get(p.stage, p.stage) or "checking the cache"
    left = f"about {fmt_seconds(p.left)} left" if p.left is not None else \
        "time left: measured after the first computed step"
    where = f"step {state.step + 1}/{p.total} · {describe(state.what)}"
    return f"{where} · {now} · {fmt_seconds(p.seconds)} elapsed, {left}"


def rerun_due(state: JobState, version: int, eager: bool, since: float) -> bool:
    """Whether a page that drew ``version`` of a job reruns now: the version moved on, and the job ended, the
    page is ``eager`` (it shows no results yet) or it was drawn :data:`RERUN_GAP_S` ago."""
    return state.version != version and (state.done or eager or since >= RERUN_GAP_S)


def _follow(job: Job, version: int, eager: bool, drawn_at: float, describe: Callable[[Any], str]) -> None:
    state = job.state()
    if rerun_due(state, version, eager, time.monotonic() - drawn_at):
        st.rerun(scope="app")
    if not state.done:
        st.progress(state.progress.fraction, text=f"job #{job.id} · {progress_text(state, describe)}")


@st.fragment(run_every=POLL_S)
def _watch(job: Job, version: int, describe: Callable[[Any], str], drawn_at: float) -> None:
    _follow(job, version, False, drawn_at, describe)


@st.fragment(run_every=EAGER_POLL_S)
def _watch_eager(job: Job, version: int, describe: Callable[[Any], str], drawn_at: float) -> None:
    _follow(job, version, True, drawn_at, describe)


def served() -> bool:
    """Whether a Streamlit server runs this session (its browser reruns fragments); AppTest and bare runs have none."""
    from streamlit.runtime import Runtime, exists

    return exists() and type(Runtime.instance()) is Runtime


def watch(job: Job, version: int, describe: Callable[[Any], str], eager: bool = False) -> None:
    """Where the page shows a job it drew at ``version``: its progress bar, and a rerun of the page whenever the
    job has advanced (see the module docstring). Nothing once the page shows the finished job."""
    if version != job.version or not job.done:
        (_watch_eager if eager else _watch)(job, version, describe, time.monotonic())


def settle(job: Job, version: int) -> None:
    """At the end of a page: without a server to rerun :func:`watch`, wait for the job and rerun once."""
    if not served() and (version != job.version or not job.done):
        job.join()
        st.rerun()


def error_message(e: BaseException) -> str:
    """The message a page shows for a failed job: the library's own words for the errors it names."""
    if isinstance(e, (ValueError, RtcoreError)):  # raised on purpose, with the value and the fix
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}. The details are in the server log."
