"""Files that reproduce a result somewhere else: a download's descriptive name, the shell script that rebuilds an
evaluation's CSVs, and the sweep file of a comparison of transfer methods.

The script is one ``python -m rtcore evaluate`` per spec (:meth:`EvalSpec.command`) over every eps: rtcore
attacks each eps on its own, so one command gives numbers that were computed in stages; on an empty cache it
writes the same per-sample CSV byte for byte, with the cache that computed them it is a cache hit. It calls the
interpreter of this process (overridable with ``PYTHON``). The sweep file is
:func:`rtcore.runs.compare.comparison_sweep` as TOML: ``python -m rtcore sweep FILE`` computes each method's rows.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from ..transfer import FineTuneRecipe
from .compare import comparison_sweep
from .jobs import TransferRequest
from .spec import EvalSpec, interpreter
from .spec_files import toml_text
from .sweep_spec import slug

__all__ = ["comparison_toml", "download_name", "reproduce_script", "script_commands", "spec_download_name"]

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


def download_name(kind: str, backbones: Sequence[str], norm: str, n: object, attack: str, *,
                  probes: Sequence[str] = ("logistic",), ext: str = "csv") -> str:
    """A descriptive file name, e.g. ``rtcore-samples-fmnist-cnn-standard-linf-n200-fast.csv`` (the number of
    backbones or probes where there are several; the probe where it is not logistic)."""
    who, heads = list(dict.fromkeys(backbones)), list(dict.fromkeys(probes))
    name = slug(who[0], 80) if len(who) == 1 else f"{len(who)}-backbones"
    probe = "" if heads == ["logistic"] else (f"-{heads[0]}" if len(heads) == 1 else f"-{len(heads)}-probes")
    return f"rtcore-{kind}-{name}{probe}-{norm}-n{n}-{attack}.{ext}"


def spec_download_name(specs: Sequence[EvalSpec], kind: str, ext: str = "csv") -> str:
    """:func:`download_name` of an evaluation's specs (one selection: norm, n and attack shared)."""
    first = specs[0]
    return download_name(kind, [s.backbone.display for s in specs], first.norm, first.n, first.strength,
                         probes=[s.probe for s in specs], ext=ext)


def script_commands(parts: Sequence[tuple[EvalSpec, Sequence[str]]], summary_name: str, samples_name: str,
                    python: str = '"$PYTHON"') -> list[str]:
    """One command per spec over its computed tasks, writing the CSVs, then (with several) their concatenation."""
    lines: list[str] = []
    outputs: list[tuple[str, str]] = []
    many = len(parts) > 1
    for spec, tasks in parts:
        if many:
            tag = slug(f"{spec.backbone.display}-{spec.probe}", 80)
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


def reproduce_script(specs: Sequence[EvalSpec], parts: Sequence[tuple[EvalSpec, Sequence[str]]]) -> str:
    """The ``.sh`` that rebuilds the summary and per-sample CSVs of ``specs`` (named by
    :func:`spec_download_name`): a header that says how to run it, then :func:`script_commands` over ``parts``
    (each spec with the tasks it computed)."""
    summary_name, samples_name = spec_download_name(specs, "summary"), spec_download_name(specs, "samples")
    head = SCRIPT_HEAD.format(samples=samples_name, script=spec_download_name(specs, "reproduce", "sh"),
                              python=re.sub(r'(["$`\\])', r"\\\1", interpreter()))
    return head + "\n".join(script_commands(parts, summary_name, samples_name)) + "\n"


def comparison_toml(request: TransferRequest) -> str:
    """The sweep file (TOML) that computes the comparison of ``request``: ``python -m rtcore sweep FILE`` gives each
    method's rows (:func:`rtcore.runs.compare.comparison_sweep`)."""
    table = comparison_sweep(request.backbone, request.task, request.methods, request.eps, request.norm, request.n,
                             k=request.k, attack=request.attack, recipe=FineTuneRecipe(epochs=request.epochs))
    return toml_text(table)
