"""Downloads: plain CSVs of a finished job and the script that reproduces them.

The CSVs are the executors' tables as :func:`rtcore.runs.execute` returns them (tasks in the request's
order, only tasks that were computed). The script is one ``python -m rtcore evaluate`` per spec
(:meth:`rtcore.runs.EvalSpec.command`) over every eps: rtcore attacks each eps on its own, so one command
gives the numbers the dashboard computed in stages; on an empty cache it writes the same per-sample CSV
byte for byte, with the dashboard's cache it is instant. It calls the interpreter that ran the dashboard.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

import pandas as pd

from rtcore.runs import EvalRequest, EvalSpec
from rtcore.runs.spec import interpreter


SCRIPT_HEAD = """#!/usr/bin/env bash
# Reproduces the dashboard's CSVs ({samples} byte for byte) with rtcore's command line.
# Run it in any folder:   bash {script}
# It writes the CSVs into that folder. It calls the Python that ran the dashboard
# ({python}); on another machine, set PYTHON to a Python with rtcore installed
# (in the repository: `make venv` then PYTHON=.venv/bin/python bash {script}).
# Each eps is attacked on its own, so one command over every eps gives the dashboard's numbers,
# although the dashboard computed them in stages. On an empty cache it recomputes everything; with the
# dashboard's cache (~/.cache/rtcore or $RTCORE_CACHE_DIR) it is a cache hit. --cache-dir DIR: another folder.
set -euo pipefail
PYTHON="${{PYTHON:-{python}}}"
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "backbone"


def download_name(request: EvalRequest, kind: str, ext: str = "csv") -> str:
    """A descriptive file name, e.g. ``rtcore-samples-fmnist-cnn-standard-linf-n200-fast.csv``."""
    spec = request.specs[0]
    backbones = list(dict.fromkeys(s.backbone.display for s in request.specs))
    probes = list(dict.fromkeys(s.probe for s in request.specs))
    who = _slug(backbones[0]) if len(backbones) == 1 else f"{len(backbones)}-backbones"
    probe = "" if probes == ["logistic"] else (f"-{probes[0]}" if len(probes) == 1 else f"-{len(probes)}-probes")
    return f"rtcore-{kind}-{who}{probe}-{spec.norm}-n{spec.n}-{spec.strength}.{ext}"


def csv_bytes(df: pd.DataFrame) -> bytes:
    """Plain CSV, written exactly as ``python -m rtcore evaluate --out/--samples-out`` writes it."""
    return df.to_csv(index=False).encode()


def script_commands(parts: Sequence[tuple[EvalSpec, Sequence[str]]], summary_name: str, samples_name: str,
                    python: str = '"$PYTHON"') -> list[str]:
    """One command per spec over its computed tasks, writing the CSVs, then (with several) their concatenation."""
    lines: list[str] = []
    outputs: list[tuple[str, str]] = []
    many = len(parts) > 1
    for spec, tasks in parts:
        if many:
            tag = _slug(f"{spec.backbone.display}-{spec.probe}")
            out, samples_out = f"summary-{tag}.csv", f"samples-{tag}.csv"
        else:
            out, samples_out = summary_name, samples_name
        cmd = spec.with_(tasks=tuple(tasks)).command(out=out, samples_out=samples_out, python="PYTHON")
        lines.append(cmd.replace("PYTHON", python, 1))
        outputs.append((out, samples_out))
    if many:
        for name, idx in ((summary_name, 0), (samples_name, 1)):
            files = " ".join(shlex.quote(o[idx]) for o in outputs)
            lines.append(f"{{ head -n 1 {shlex.quote(outputs[0][idx])}; tail -q -n +2 {files}; }} > "
                         f"{shlex.quote(name)}")
    return lines


def repro_script(request: EvalRequest, parts: Sequence[tuple[EvalSpec, Sequence[str]]]) -> str:
    """The downloadable ``.sh``: a header that says how to run it, then :func:`script_commands`."""
    summary_name, samples_name = download_name(request, "summary"), download_name(request, "samples")
    head = SCRIPT_HEAD.format(samples=samples_name, script=download_name(request, "reproduce", "sh"),
                              python=re.sub(r'(["$`\\])', r"\\\1", interpreter()))
    return head + "\n".join(script_commands(parts, summary_name, samples_name)) + "\n"
