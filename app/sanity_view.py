"""The landing page's sanity flags: is the attack behind the robust accuracy trustworthy?

:mod:`rtcore.sanity` runs four checks from RobustBench / AutoAttack practice. They cost extra attack work,
so they run only when asked, as a job like any other: the landing page's spec with ``sanity=True``, whose
planned units are the page's (cache hits) plus one sanity unit per task. The flags live in that job's
executor (shared by every session) and are shown next to the numbers (:func:`rtcore.sanity.with_flags`).
"""

from __future__ import annotations

import streamlit as st

from rtcore.export import csv_bytes
from rtcore.models.ref import BackboneRef
from rtcore.runs import EvalJob, EvalRequest
from rtcore.runs.reproduce import spec_download_name
from rtcore.sanity import FLAG_NAMES, SanityFlag, flag_table, verdict

from . import jobs, ui
from .texts import text


def sanity_job(ref: BackboneRef, tasks: list[str]) -> EvalJob | None:
    """The sanity job of the page's selection (its probe too) over ``tasks``, if one was started (by this or
    another session)."""
    return jobs.SCHEDULER.get(_request(ref, tasks).key) if tasks else None  # type: ignore[return-value]


def _request(ref: BackboneRef, tasks: list[str]) -> EvalRequest:
    return ui.request_for([ref], tasks, probes=(st.session_state["probe"],), sanity=True)


def current(ref: BackboneRef, run: ui.PageJob) -> dict[str, list[SanityFlag]]:
    """The flags of a finished sanity job of this selection, or {}."""
    job = sanity_job(ref, run.job.finished_tasks() if run.snapshot.done else [])
    return job.sanity_flags() if job is not None else {}


def section(ref: BackboneRef, run: ui.PageJob) -> None:
    """The opt-in section: what the checks are, the button, progress, then the flags, verdicts and CSV."""
    st.subheader("Is the attack trustworthy? (sanity flags)")
    st.markdown(text("sanity_intro"))
    tasks = run.job.finished_tasks() if run.snapshot.done else []
    job = sanity_job(ref, tasks)
    label = "Run the sanity checks again" if job is not None and job.done else "Run the sanity checks"
    if st.button(label, key="sanity_run", disabled=not tasks,
                 help=f"Runs the checks on {ui.plural(len(tasks), 'task')}; the attacks themselves are cache hits."
                 if tasks else "Disabled: available when all results are ready."):
        if job is not None and job.done:
            jobs.SCHEDULER.discard(job.key)
        g = ui.load(ref)
        if g is None:
            return
        job = jobs.submit(_request(ref, tasks), {ref: g}, "sanity")
    if not tasks:
        st.caption("The button is disabled: it is available when all results are ready.")
    if job is None:
        return
    if not job.done:
        jobs.watch(job, job.version, lambda unit: jobs.unit_label(unit, job.request))
        jobs.settle(job, job.version)
        return
    for err in job.state().errors:
        st.error(f"The sanity checks failed: {jobs.error_message(err)}")
    flags = job.sanity_flags()
    for task, fl in flags.items():
        ok, line = verdict(fl)
        (st.success if ok else st.warning)(f"**{task}**: {line}")
    if flags:
        table = flag_table(flags).rename(columns={"meaning": "if it fails"})
        ui.table(table)
        ui.download_row("sanity", [("Sanity flags CSV", csv_bytes(table), spec_download_name(run.request.specs,
                                                                                           "sanity"))])
        st.caption(f"Checks: {', '.join(FLAG_NAMES)}. A skipped check counts as passed (e.g. Square needs "
                   "pyautoattack).")
