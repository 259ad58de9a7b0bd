"""The landing page's sanity flags: is the attack behind the robust accuracy trustworthy?

:func:`rtcore.sanity.sanity_checks` runs four checks from RobustBench / AutoAttack practice
(monotone in eps and broken at a large eps, noise weaker than the attack, more steps change
little, the gradient-free Square attack finds nothing more). They cost extra attack work, so
the page runs them only when asked (:func:`section`): for the landing page's backbone, probe,
tasks, norm, n, strength and seed, calling :func:`rtcore.run_evaluation` exactly as the page's job
does, so that every attack is a cache hit and only the checks compute. The flags are kept in the
session under the request and backbone, and shown next to the numbers (:func:`with_flags`).

The pure functions (:func:`flag_table`, :func:`verdict`, :func:`with_flags`, :func:`values_text`)
return data; :func:`section` draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from rtcore import Backbone, ProgressEvent, TaskUnavailableError, run_evaluation
from rtcore.sanity import FLAG_NAMES, SanityFlag, summary_text

from . import exports, ui
from .backbones import BackboneRef
from .devices import DEVICE_LOCK, DEVICE_POLL_S
from .jobs import STAGE_TEXT
from .pieces import cached_task
from .plan import EvalRequest

SUBSET = 128  # points of the subset checks (more_steps, gradient_free)
STATE_KEY = "sanity_flags"  # session state: {"key": (request, backbone), "flags": {task: [SanityFlag]}, ...}
NOT_READY = "available when all results are ready"
FAILED_NOTE = "the robust accuracy may be an overestimate"
Flags = Mapping[str, Sequence[SanityFlag]]
Progress = Callable[[float, str], None]

TABLE_COLUMNS: dict[str, Any] = {
    "sanity": st.column_config.TextColumn(
        "sanity", help="sanity flags of the attack (section below): 'ok', or the checks that failed"),
}
FLAG_COLUMNS: dict[str, Any] = {
    "measured": st.column_config.TextColumn("measured", help="what the check measured (accuracies are fractions)"),
    "threshold": st.column_config.TextColumn("threshold", help="what the check holds the evaluation to"),
    "if it fails": st.column_config.TextColumn("if it fails", help="what a failed check says about the attack"),
}


# ---------------------------------------------------------------- pure functions

def values_text(values: Mapping[str, float]) -> str:
    """The measured values, compact: ``drop=0.05, eps=0.0157, steps=40``."""
    return ", ".join(f"{k}={v:.3g}" for k, v in values.items())


def flag_table(flags: Flags) -> pd.DataFrame:
    """One row per task and check: task, check, status (ok / failed / skipped), measured values,
    threshold and what a failure means."""
    rows = [{"task": task, "check": f.name, "status": f.status, "measured": values_text(f.values),
             "threshold": f.threshold, "if it fails": f.meaning}
            for task, fl in flags.items() for f in fl]
    return pd.DataFrame(rows, columns=["task", "check", "status", "measured", "threshold", "if it fails"])


def verdict(flags: Sequence[SanityFlag]) -> tuple[bool, str]:
    """(every check passed, one line): ``all checks passed`` or ``N checks failed (...): the robust
    accuracy may be an overestimate``; skipped checks are named."""
    failed = [f.name for f in flags if not f.passed]
    skipped = [f.name for f in flags if f.skipped]
    note = f" (skipped: {', '.join(skipped)})" if skipped else ""
    if not failed:
        return True, f"all checks passed{note}"
    word = "check" if len(failed) == 1 else "checks"
    return False, f"{len(failed)} {word} failed ({', '.join(failed)}): {FAILED_NOTE}{note}"


def with_flags(table: pd.DataFrame, flags: Flags) -> pd.DataFrame:
    """``table`` (one row per task) with a ``sanity`` column: ``ok`` or the failed checks' names
    (``not checked`` for a task without flags); unchanged when there are no flags."""
    if not flags or "task" not in table.columns:
        return table
    text = {task: summary_text(fl) for task, fl in flags.items()}
    return table.assign(sanity=table["task"].map(lambda t: text.get(t, "not checked")))


def flags_csv(flags: Flags) -> bytes:
    """The flags as a plain CSV (the table as shown, one row per task and check)."""
    return exports.csv_bytes(flag_table(flags))


# ---------------------------------------------------------------- what to check, and checking it

def state_key(request: EvalRequest, ref: BackboneRef) -> tuple[EvalRequest, BackboneRef]:
    """What the flags belong to: a new selection (request or backbone) does not see old flags."""
    return request, ref


def ready_tasks(run: ui.Run, ref: BackboneRef, probe: str) -> list[str]:
    """The tasks whose final results (every eps, every attack) the page has, in request order;
    empty while the page's job is still running."""
    if not run.snapshot.done:
        return []
    return [t for r, p, tasks, _ in exports.export_parts(run.job) if r == ref and p == probe for t in tasks]


def compute_flags(g: Backbone, request: EvalRequest, tasks: Sequence[str], probe: str,
                  progress: Progress | None = None) -> tuple[dict[str, list[SanityFlag]], list[str]]:
    """The sanity flags of each task (and the tasks skipped as unavailable), with the arguments of
    the page's final evaluation step (:meth:`app.jobs.EvaluationJob._compute`), so only the checks
    compute. ``progress(fraction, text)`` reports the task and stage."""
    report = progress or (lambda f, text: None)
    flags: dict[str, list[SanityFlag]] = {}
    skipped: list[str] = []
    for i, name in enumerate(tasks):
        try:
            task = cached_task(name)
        except TaskUnavailableError:
            skipped.append(name)
            continue

        def on_event(ev: ProgressEvent, i: int = i, name: str = name) -> None:
            stage = STAGE_TEXT.get(ev.stage, ev.stage)
            report((i + min(max(ev.fraction, 0.0), 1.0)) / len(tasks), f"{name} · {stage}")

        ev = run_evaluation(g, [task], list(request.eps_values), request.norm, request.n, attack=request.attack,
                            seed=request.seed, probe=probe, head_attack=True, loss_attack=True,
                            cache_dir=request.cache_dir, device=getattr(g, "device", None), progress=on_event,
                            sanity=True, sanity_subset=SUBSET)
        flags.update({t: list(fl) for t, fl in ev.sanity.items()})
    report(1.0, "done")
    return flags, skipped


def current(run: ui.Run, ref: BackboneRef,
            session: MutableMapping[str, Any] | None = None) -> dict[str, list[SanityFlag]]:
    """The flags stored in ``session`` (the Streamlit session by default) for this request and
    backbone, or {}; flags of another selection are dropped."""
    session = st.session_state if session is None else session
    stored = session.get(STATE_KEY)
    if stored is None:
        return {}
    if stored["key"] != state_key(run.request, ref):
        del session[STATE_KEY]
        return {}
    return stored["flags"]


# ---------------------------------------------------------------- drawing

def _run_checks(ref: BackboneRef, run: ui.Run, tasks: Sequence[str]) -> None:
    """Compute the flags under a progress bar (holding the device like a job step) and store them."""
    g = ui.load(ref)
    if g is None:
        return
    bar = st.progress(0.0, text="sanity checks · waiting for the device")
    owner = object()
    try:
        while not DEVICE_LOCK.acquire(owner, timeout=DEVICE_POLL_S):
            bar.progress(0.0, text="sanity checks · waiting for the device (another evaluation step is running)")
    except BaseException:  # a rerun or stop of the page while waiting: leave the queue
        DEVICE_LOCK.withdraw(owner)
        raise
    try:
        flags, skipped = compute_flags(
            g, run.request, tasks, run.request.probes[0],
            lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text=f"sanity checks · {text}"))
    except Exception as e:  # noqa: BLE001 - the page shows a message, never a traceback
        st.error(f"The sanity checks failed ({type(e).__name__}): {e}")
        return
    finally:
        DEVICE_LOCK.release(owner)
        bar.empty()
    st.session_state[STATE_KEY] = {"key": state_key(run.request, ref), "flags": flags, "skipped": skipped}
    st.rerun()  # the per-task table above gets its sanity column


def section(ref: BackboneRef, run: ui.Run) -> None:
    """The opt-in section: what the checks are, the button, then the flags, verdicts and CSV."""
    st.subheader("Is the attack trustworthy? (sanity flags)")
    st.markdown(
        "A robust accuracy measured by an attack is only an upper estimate. Four checks from RobustBench / "
        "AutoAttack practice look for a weak attack or masked gradients: robust accuracy never rises with ε and is "
        "(nearly) zero at a huge ε (`monotone_large_eps`); random noise in the ball is weaker than the attack "
        "(`noise_weaker`); 4× the steps and ≥ 2 restarts barely lower it (`more_steps`); the gradient-free Square "
        f"attack breaks (almost) nothing more (`gradient_free`, on up to {SUBSET} points). They cost extra attack "
        "work (noise draws, a stronger re-run, Square), so they run only when asked.")
    flags = current(run, ref)
    tasks = ready_tasks(run, ref, run.request.probes[0])
    why = "" if tasks else NOT_READY
    label = "Run the sanity checks again" if flags else "Run the sanity checks"
    hint = f"Disabled: {why}." if why else \
        f"Runs the checks on {ui.plural(len(tasks), 'task')}; the attack results themselves come from the cache."
    if st.button(label, key="sanity_run", disabled=bool(why), help=hint):
        _run_checks(ref, run, tasks)
    if why:
        st.caption(f"The button is disabled: it is {why}.")
    if not flags:
        return
    skipped = st.session_state[STATE_KEY].get("skipped", [])
    if skipped:
        st.info(f"Not checked (task unavailable): {', '.join(skipped)}.")
    for task, fl in flags.items():
        ok, line = verdict(fl)
        (st.success if ok else st.warning)(f"**{task}**: {line}")
    st.dataframe(flag_table(flags), hide_index=True, key="sanity_table", column_config=FLAG_COLUMNS)
    st.download_button("Sanity flags CSV", data=flags_csv(flags),
                       file_name=exports.download_name(run.request, "sanity"), mime="text/csv", key="sanity_dl",
                       on_click="ignore", icon=":material/download:")
    st.caption(f"Checks: {', '.join(FLAG_NAMES)}. A skipped check counts as passed (e.g. Square needs pyautoattack).")


__all__ = ["FLAG_COLUMNS", "TABLE_COLUMNS", "compute_flags", "current", "flag_table", "flags_csv", "ready_tasks",
           "section", "state_key", "values_text", "verdict", "with_flags"]
