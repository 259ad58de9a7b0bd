"""The dashboard's side of the library's scheduler (:mod:`rtcore.runs.scheduler`, :mod:`rtcore.runs.jobs`): the
only module of the app that deals with threads.

Jobs run on the process's scheduler, shared by every session asking the same; a session's pages are owners
(``"{session token}:{slot}"``), and :class:`StreamlitSessions` tells the scheduler which owners' browser tabs
have closed. A page waiting on a job draws :func:`watch`: a fragment that reads the job's version every
:data:`POLL_S` (a cheap read) and reruns the whole page when it changed (at once for the first results and at the
end, else at most every :data:`RERUN_GAP_S`), and draws nothing more once the page shows the finished job: every
session converges, whichever session started the job. Without a server (AppTest, a bare script) nobody reruns
fragments, so :func:`settle` waits for the job there instead.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from rtcore import Backbone, BackboneUnavailableError, CheckpointError, TaskUnavailableError
from rtcore.models.ref import BackboneRef
from rtcore.runs import EvalJob, EvalRequest, Job, JobState, TransferJob, TransferRequest, Unit, default_scheduler, \
    fmt_seconds

from . import backbones as bb
from .state import SEED, default_eps, eps_short

POLL_S = 1.0  # how often a page waiting on a job reads its version
RERUN_GAP_S = 3.0  # while a job computes, a page reruns at most this often (its first results and the end at once)
#: what a unit does, in the progress line (before it reports a stage, it may be all cached)
UNIT_TEXT = {"fit": "probe fit and clean accuracy", "attack": "feature and end-to-end attacks",
             "head_loss": "head-subspace and loss attacks", "sanity": "sanity checks"}
#: the library's stage names in the progress line; a stage is only reported while it computes
STAGE_TEXT = {"linear probe": "fitting the linear probe", "feature attack": "feature attack (Δ)",
              "end-to-end attack": "end-to-end attack", "head-subspace attack": "head-subspace attack (Δ_P)",
              "loss attack": "cross-entropy attack (loss)", "sanity checks": "sanity checks",
              "fine-tuning": "fine-tuning", "reading cached results": "read from the cache", "done": "stored"}


class StreamlitSessions:
    """Which Streamlit session each dashboard session token belongs to: the owners' liveness check.

    Called with an owner ``"{session_token}:{slot}"``, it is False only when the token's registered Streamlit
    session is known to have ended; an unregistered token, or no Streamlit runtime (AppTest, plain Python),
    counts as alive. Ended tokens are remembered (a bounded number) so that every slot of an ended session is."""

    def __init__(self, remember_ended: int = 1024) -> None:
        self._ids: dict[str, str] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._remember_ended = remember_ended
        self._lock = threading.Lock()

    def register(self, token: str, session_id: str | None) -> None:
        """Remember that ``token`` belongs to the Streamlit session ``session_id`` (None: unknown)."""
        if session_id:
            with self._lock:
                self._ids[token] = session_id
                self._ended.pop(token, None)

    def __call__(self, owner: str) -> bool:
        token = owner.split(":", 1)[0]
        with self._lock:
            if token in self._ended:
                return False
            session_id = self._ids.get(token)
        if session_id is None or _session_active(session_id) is not False:
            return True
        with self._lock:
            if self._ids.get(token) == session_id:
                del self._ids[token]
                self._ended[token] = None
                while len(self._ended) > self._remember_ended:
                    self._ended.popitem(last=False)
        return False


def _session_active(session_id: str) -> bool | None:
    """Whether Streamlit's runtime has ``session_id`` as an active session; None when it cannot tell."""
    try:
        from streamlit import runtime

        active = runtime.get_instance().is_active_session(session_id) if runtime.exists() else None
    except Exception:  # noqa: BLE001 - no runtime, or one that cannot answer: assume the session lives
        return None
    return active if isinstance(active, bool) else None


SESSIONS = StreamlitSessions()
SCHEDULER = default_scheduler()
SCHEDULER.is_alive = SESSIONS


def owner(slot: str) -> str:
    """This session's owner name for ``slot``, its token tied to the Streamlit session (pruned once it ends)."""
    token = st.session_state["session_token"]
    ctx = get_script_run_ctx()
    SESSIONS.register(token, ctx.session_id if ctx is not None else None)
    return f"{token}:{slot}"


def make_request(refs: Sequence[BackboneRef], tasks: Sequence[str], norm: str, n: int, attack: str, *,
                 probes: Sequence[str] = ("logistic",), extras: Sequence[float] = (), cache_dir: str = "",
                 sanity: bool = False) -> EvalRequest:
    """The dashboard's request: the library's grid plus ``extras``, the cursor's default eps first, its seed."""
    return EvalRequest.over_grid(refs, tasks, norm, n, attack, probes=probes, extras=extras,
                                 first=(default_eps(norm),), seed=SEED, cache_dir=cache_dir, sanity=sanity)


def submit(request: EvalRequest, loaded: Mapping[BackboneRef, Backbone], slot: str) -> EvalJob:
    """Start or attach to the job of ``request``; when it replaces this slot's job over other eps of the same
    selection, it shows that job's rows until it has its own."""

    def make(old: Job | None, delay: float) -> EvalJob:
        fallback = old if isinstance(old, EvalJob) and old.request.same_but_eps(request) else None
        return EvalJob(request, loaded, delay=delay, fallback=fallback)

    return SCHEDULER.submit(request.key, make, owner(slot))  # type: ignore[return-value]


def submit_transfer(request: TransferRequest, g: Backbone) -> TransferJob:
    """Start or attach to the comparison of ``request`` (slot ``transfer``)."""
    return SCHEDULER.submit(request, lambda old, delay: TransferJob(request, g, delay=delay),  # type: ignore[return-value]
                            owner("transfer"))


# ---------------------------------------------------------------- backbones: one per process, shared

_LOADING = threading.Lock()


@st.cache_resource(show_spinner="Loading the backbone (once per server process)…", max_entries=8)
def cached_backbone(ref: BackboneRef) -> Backbone:
    """Loaded once per process and shared by every session and executor: never mutate it."""
    with _LOADING:  # one load at a time: a cold server's first visitors share it instead of racing
        return bb.load_backbone(ref)


# ---------------------------------------------------------------- following a job

def unit_label(unit: Unit, request: EvalRequest) -> str:
    """``shapes · ε 4/255 · feature and end-to-end attacks`` (with the backbone and probe when several)."""
    specs = request.specs
    who = (f"{unit.spec.backbone.display} · " if len({s.backbone for s in specs}) > 1 else "") + \
        (f"probe {unit.spec.probe} · " if len({s.probe for s in specs}) > 1 else "")
    eps = [e for e in unit.eps if e > 0]
    where = f" · ε {', '.join(eps_short(e, unit.spec.norm) for e in eps)}" if eps and unit.stage != "sanity" else ""
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
    return f"step {state.step + 1}/{p.total} · {describe(state.what)} · {now} · {fmt_seconds(p.seconds)} elapsed, {left}"


def rerun_due(state: JobState, version: int, eager: bool, since: float) -> bool:
    """Whether a page that drew ``version`` of a job reruns now: the version moved on, and the job ended, the
    page is ``eager`` (it has no results yet) or it was drawn :data:`RERUN_GAP_S` ago."""
    return state.version != version and (state.done or eager or since >= RERUN_GAP_S)


@st.fragment(run_every=POLL_S)
def _watch(job: Job, version: int, eager: bool, drawn_at: float, describe: Callable[[Any], str]) -> None:
    state = job.state()
    if rerun_due(state, version, eager, time.monotonic() - drawn_at):
        st.rerun(scope="app")
    if not state.done:
        st.progress(state.progress.fraction, text=f"job #{job.id} · {progress_text(state, describe)}")


def served() -> bool:
    """Whether a Streamlit server runs this session (its browser reruns fragments); AppTest and bare runs have none."""
    from streamlit.runtime import Runtime, exists

    return exists() and type(Runtime.instance()) is Runtime


def watch(job: Job, version: int, describe: Callable[[Any], str], eager: bool = False) -> None:
    """Where the page shows a job it drew at ``version``: its progress bar, and a rerun of the page whenever the
    job has advanced (see the module docstring). Nothing once the page shows the finished job."""
    if version != job.version or not job.done:
        _watch(job, version, eager, time.monotonic(), describe)


def settle(job: Job, version: int) -> None:
    """At the end of a page: without a server to rerun :func:`watch`, wait for the job and rerun once."""
    if not served() and (version != job.version or not job.done):
        job.join()
        st.rerun()


def error_message(e: BaseException) -> str:
    """The message a page shows for a failed job: the library's own words for the errors it names."""
    if isinstance(e, (ValueError, TaskUnavailableError, BackboneUnavailableError, CheckpointError)):
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}. The details are in the server log."
