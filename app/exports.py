"""Downloads and the reproducing command line; the per-eps table the landing page shows."""

from __future__ import annotations

import logging
import math
import re
import shlex

import numpy as np
import pandas as pd
import torch

from rtcore import (
    cli_command,
)

log = logging.getLogger(__name__)

from .backbones import BackboneRef
from .jobs import EvalRequest, Snapshot

# ---------------------------------------------------------------- downloads and reproduction

def cli_for(request: EvalRequest, ref: BackboneRef, out: str = "results.csv") -> str:
    """The exact command line that reproduces ``request`` for one backbone."""
    cmd = cli_command(ref.name, list(request.tasks), list(request.eps_values), request.norm, request.n,
                      request.attack, request.seed, out)
    if ref.weights is not None:
        cmd += " --weights " + shlex.quote(ref.weights)
    return cmd


def cli_text(request: EvalRequest) -> str:
    """One reproducing command per backbone of the request."""
    return "\n".join(cli_for(request, ref, out=f"results-{_slug(ref.display)}.csv" if len(request.backbones) > 1
                             else "results.csv") for ref in request.backbones)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "backbone"


def csv_bytes(df: pd.DataFrame, request: EvalRequest | None = None) -> bytes:
    """CSV of a result table; with a request, the reproducing command comes first as ``#`` lines."""
    head = ""
    if request is not None:
        head = "".join(f"# reproduce: {line}\n" for line in cli_text(request).splitlines())
        head += "# the bound is an attack estimate (a prediction), not a certificate\n"
    return (head + df.to_csv(index=False)).encode()


def download_name(request: EvalRequest, kind: str) -> str:
    """A descriptive file name, e.g. ``rtcore-summary-fmnist-cnn-standard-linf-n200-fast.csv``."""
    who = _slug(request.backbones[0].display) if len(request.backbones) == 1 else f"{len(request.backbones)}-backbones"
    return f"rtcore-{kind}-{who}-{request.norm}-n{request.n}-{request.attack}.csv"


TABLE_NAMES = {"clean_acc": "clean", "robust_acc": "robust (attack)", "bound": "bound", "mean_delta": "mean Δ"}


def display_table(summary: pd.DataFrame, eps: float, by: str = "task") -> pd.DataFrame:
    """The per-task numbers at one eps, as the landing page shows them."""
    rows = summary[np.isclose(summary["eps"].astype(float), eps)]
    cols = [c for c in [by, "clean_acc", "robust_acc", "bound", "mean_delta", "n"] if c in rows.columns]
    if by != "task" and "task" in rows.columns:
        cols.insert(1, "task")
    out = rows[cols].rename(columns=TABLE_NAMES)
    return out.reset_index(drop=True)


def gallery_item(snapshot: Snapshot, backbone: str, task: str, eps: float) -> dict[str, torch.Tensor] | None:
    """The gallery images of (backbone, task, eps), or None if not computed yet."""
    for (b, t, e), item in snapshot.gallery.items():
        if b == backbone and t == task and math.isclose(e, eps, abs_tol=1e-9):
            return item
    return None


