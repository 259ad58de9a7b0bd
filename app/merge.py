"""Finished steps into the tables the pages draw: one row per (backbone, probe, task, eps) and per sample.

A step with the head-subspace and loss attacks supersedes the same eps computed without them;
among equals the later step wins. Rows are ordered as the request lists backbones, probes, tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from rtcore import Evaluation

from .plan import EvalRequest, Step

SUMMARY_KEYS = ["backbone", "probe", "task", "norm", "eps"]
SUMMARY_COLUMNS = ["backbone", "probe", "task", "norm", "eps", "n", "clean_acc", "robust_acc", "bound", "bound_head",
                   "mean_delta", "clean_loss", "adv_loss", "loss_bound_lse", "loss_bound", "head_attack",
                   "loss_attack"]
SAMPLE_COLUMNS = ["backbone", "probe", "task", "norm", "eps", "sample", "label", "pred", "correct", "rho", "delta",
                  "delta_head", "criterion_met", "criterion_met_head", "robust", "clean_loss", "adv_loss",
                  "loss_bound", "loss_bound_lse", "feature_norm"]

Gallery = dict[tuple[str, str, float], dict[str, torch.Tensor]]


def _order(request: EvalRequest) -> dict[str, dict[str, int]]:
    return {"backbone": {b.display: i for i, b in enumerate(request.backbones)},
            "probe": {p: i for i, p in enumerate(request.probes)},
            "task": {t: i for i, t in enumerate(request.tasks)}}


def _best(frames: list[pd.DataFrame], keys: list[str], request: EvalRequest) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["_rank", "_i"], kind="stable").drop_duplicates(keys, keep="last")
    order = _order(request)
    sort_cols = [c for c in ["backbone", "probe", "task", "eps", "sample"] if c in df.columns]
    df = df.sort_values(sort_cols, kind="stable",
                        key=lambda col: col.map(order[col.name]) if col.name in order else col)
    return df.drop(columns=["_rank", "_i"]).reset_index(drop=True)


def merge(pieces: Sequence[tuple[Step, Evaluation]], request: EvalRequest
          ) -> tuple[pd.DataFrame, pd.DataFrame, Gallery]:
    """The summary, the per-sample table and the gallery of the finished steps."""
    if not pieces:
        return pd.DataFrame(columns=SUMMARY_COLUMNS), pd.DataFrame(columns=SAMPLE_COLUMNS), {}
    summaries, samples, gallery = [], [], {}
    for i, (step, ev) in enumerate(pieces):
        s, p = ev.summary.copy(), ev.samples.copy()
        for df in (s, p):
            df["backbone"] = step.ref.display
            if "probe" not in df.columns:
                df["probe"] = step.probe
            df["_rank"], df["_i"] = int(step.full), i
        summaries.append(s)
        samples.append(p)
        for (task, e), item in ev.gallery.items():
            gallery[(step.ref.display, task, float(e))] = item
    summary = _best(summaries, SUMMARY_KEYS, request)
    sample_df = _best(samples, [*SUMMARY_KEYS, "sample"], request)
    return summary, sample_df, gallery


def full_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows computed with the head-subspace and loss attacks (the loss page, bound (head subspace))."""
    if summary.empty or "head_attack" not in summary.columns:
        return summary
    return summary[summary["head_attack"].astype(bool) & summary["loss_attack"].astype(bool)]
