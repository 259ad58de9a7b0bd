"""Downloads and the reproducing script; the per-eps tables the pages show.

The CSVs are plain (``pd.read_csv`` reads them, no comment lines): the summary and the per-sample
table of the job's *final* steps, exactly as ``rtcore.run_evaluation`` returned them, tasks in the
request's order, only the tasks that were computed. The script is one ``python -m rtcore evaluate``
per backbone and probe over every eps of the request: rtcore attacks each eps on its own and carries
smaller eps' witnesses over when it builds the tables, so the dashboard's staged work and one
command give the same numbers, and on an empty cache the command writes the same per-sample CSV
byte for byte (with the dashboard's cache it is a cache hit and instant).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

import pandas as pd
import torch

from rtcore import Evaluation, cli_command
from rtcore.config import eps_equal

from .backbones import BackboneRef
from .jobs import EvaluationJob, Snapshot
from .plan import EvalRequest

SCRIPT_HEAD = """#!/usr/bin/env bash
# Reproduces the dashboard's per-sample CSV ({samples}) byte for byte.
# Each eps is attacked on its own, so one command over every eps gives the dashboard's numbers although
# the dashboard computed them in stages. On an empty cache it recomputes everything; with the dashboard's
# cache (~/.cache/rtcore or $RTCORE_CACHE_DIR) it is a cache hit. Add --cache-dir DIR to use another folder.
set -euo pipefail
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "backbone"


def download_name(request: EvalRequest, kind: str, ext: str = "csv") -> str:
    """A descriptive file name, e.g. ``rtcore-samples-fmnist-cnn-standard-linf-n200-fast.csv``."""
    who = _slug(request.backbones[0].display) if len(request.backbones) == 1 else f"{len(request.backbones)}-backbones"
    probe = "" if request.probes == ("logistic",) else (
        f"-{request.probes[0]}" if len(request.probes) == 1 else f"-{len(request.probes)}-probes")
    return f"rtcore-{kind}-{who}{probe}-{request.norm}-n{request.n}-{request.attack}.{ext}"


def export_parts(job: EvaluationJob) -> list[tuple[BackboneRef, str, list[str], list[Evaluation]]]:
    """Per (backbone, probe): the computed tasks in request order and their final results."""
    req = job.request
    final: dict[tuple[BackboneRef, str, str], Evaluation] = {(s.ref, s.probe, s.task): ev
                                                            for s, ev in job.export_pieces()}
    parts = []
    for ref in req.backbones:
        for probe in req.probes:
            tasks = [t for t in req.tasks if (ref, probe, t) in final]
            if tasks:
                parts.append((ref, probe, tasks, [final[(ref, probe, t)] for t in tasks]))
    return parts


def export_tables(job: EvaluationJob) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The summary and per-sample tables of the final steps, or None while they are incomplete."""
    parts = export_parts(job)
    if not parts:
        return None
    evs = [ev for *_, evs in parts for ev in evs]
    summary = pd.concat([ev.summary for ev in evs], ignore_index=True)
    samples = pd.concat([ev.samples for ev in evs], ignore_index=True)
    return summary, samples


def csv_bytes(df: pd.DataFrame) -> bytes:
    """Plain CSV, written exactly as ``python -m rtcore evaluate --out/--samples-out`` writes it."""
    return df.to_csv(index=False).encode()


def _command(request: EvalRequest, ref: BackboneRef, probe: str, tasks: Sequence[str], out: str,
             samples_out: str) -> str:
    return cli_command(ref.name, list(tasks), list(request.eps_values), request.norm, request.n, request.attack,
                       request.seed, out=out, weights=ref.weights, probe=probe, samples_out=samples_out)


def script_commands(request: EvalRequest, tasks_by: Sequence[tuple[BackboneRef, str, Sequence[str]]],
                    summary_name: str, samples_name: str) -> list[str]:
    """The reproducing commands: one per backbone and probe over every eps, writing the CSVs, then
    (with several) their concatenation."""
    lines: list[str] = []
    outputs: list[tuple[str, str]] = []
    many = len(tasks_by) > 1
    for ref, probe, tasks in tasks_by:
        if many:  # one pair of files per backbone and probe, concatenated below
            tag = "-".join([_slug(ref.display)] * (len(request.backbones) > 1) + [probe] * (len(request.probes) > 1))
            out, samples_out = f"summary-{tag}.csv", f"samples-{tag}.csv"
        else:
            out, samples_out = summary_name, samples_name
        lines.append(_command(request, ref, probe, tasks, out, samples_out))
        outputs.append((out, samples_out))
    if many:
        for name, idx in ((summary_name, 0), (samples_name, 1)):
            files = " ".join(shlex.quote(o[idx]) for o in outputs)
            lines.append(f"{{ head -n 1 {shlex.quote(outputs[0][idx])}; tail -q -n +2 {files}; }} > "
                         f"{shlex.quote(name)}")
    return lines


def repro_script(job: EvaluationJob) -> str:
    """The downloadable ``.sh``: a header that says what it does, then :func:`script_commands`."""
    req = job.request
    tasks_by = [(ref, probe, tasks) for ref, probe, tasks, _ in export_parts(job)]
    if not tasks_by:
        tasks_by = [(ref, probe, list(req.tasks)) for ref in req.backbones for probe in req.probes]
    summary_name, samples_name = download_name(req, "summary"), download_name(req, "samples")
    head = SCRIPT_HEAD.format(samples=samples_name)
    return head + "\n".join(script_commands(req, tasks_by, summary_name, samples_name)) + "\n"


TABLE_NAMES = {"clean_acc": "clean", "robust_acc": "robust (attack)", "bound": "bound",
               "bound_head": "bound Δ_P", "mean_delta": "mean Δ"}


def display_table(summary: pd.DataFrame, eps: float, by: str = "task") -> pd.DataFrame:
    """The per-task numbers at one eps, as the landing and compare pages show them."""
    from rtcore.config import eps_mask

    rows = summary[eps_mask(summary["eps"], eps)] if len(summary) else summary
    cols = [c for c in [by, "clean_acc", "robust_acc", "bound", "bound_head", "mean_delta", "n"] if c in rows.columns]
    if by != "task" and "task" in rows.columns:
        cols.insert(1, "task")
    out = rows[cols].rename(columns=TABLE_NAMES)
    if "head_attack" in rows.columns and "bound Δ_P" in out.columns:
        out["bound Δ_P"] = out["bound Δ_P"].where(rows["head_attack"].astype(bool).values)
    return out.reset_index(drop=True)


def gallery_item(snapshot: Snapshot, backbone: str, task: str, eps: float) -> dict[str, torch.Tensor] | None:
    """The gallery images of (backbone, task, eps), or None if not computed yet."""
    for (b, t, e), item in snapshot.gallery.items():
        if b == backbone and t == task and eps_equal(e, eps):
            return item
    return None


def status_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """How many points meet the criterion, survive the attack without it, or are broken."""
    from .figures import STATUS_COLORS, sample_status

    counts = sample_status(rows).value_counts().reindex(list(STATUS_COLORS), fill_value=0)
    return counts.rename("points").rename_axis("status").reset_index()


__all__ = ["csv_bytes", "display_table", "download_name", "export_tables", "gallery_item", "repro_script",
           "script_commands", "status_counts"]
