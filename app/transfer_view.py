"""The "Transfer methods" page's tables and words: linear probing vs fine-tuning on one backbone and task.

The comparison runs as a job of the library's scheduler (:class:`rtcore.runs.TransferJob`: one step per method,
taking turns on the device with every other job, shared by every session asking the same); its tables come from
:mod:`rtcore.runs.compare` and are written here as text for the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from rtcore import Backbone, list_tasks
from rtcore.config import eps_text
from rtcore.runs import MethodComparison, TransferRequest, Verdict, ordering_verdict
from rtcore.runs.compare import movement_table as movements
from rtcore.runs.selection import preferred
from rtcore.transfer import METHOD_DESCRIPTIONS, FineTuneRecipe, method_label, network_blocks
from rtcore.tables import at_eps

from .figures import MISSING
from .texts import text
from .ui import text_table

SUMMARY_COLUMNS = {
    "method": ("method", ""), "clean": ("clean_acc", "ci"), "robust (attack)": ("robust_acc", "ci"),
    "bound": ("bound", "ci"), "bound with base Δ": ("bound_pre", ".3f"), "mean Δ": ("mean_delta", ".3f"),
    "mean Δ before (base)": ("mean_delta_base", ".3f"), "relative Δ": ("mean_relative_delta", ".3f"),
    "relative Δ before (base)": ("mean_relative_delta_base", ".3f"), "weight distance": ("weight_distance", ".3f"),
    "adaptation s": ("adapt_seconds", ".1f")}
MOVEMENT_COLUMNS = {"weight_distance": "total", "head_distance": "head (from its start)", "head_init": "head start",
                    "params_trained": "parameters trained", "params_frozen": "parameters frozen"}


def method_text(request: TransferRequest) -> Callable[[str], str]:
    """What a step of the comparison does, in its progress line: ``shapes · ft-last-2``."""
    return lambda method: f"{request.task} · {method_label(method, request.k)}"


# ---------------------------------------------------------------- tables and words

def method_summary(comparison: MethodComparison, eps: float) -> pd.DataFrame:
    """One row per method at ``eps``: accuracies and bounds with 95 % intervals, mean Δ before and after, and
    how far the weights moved (a dash where a value does not apply)."""
    return text_table(at_eps(comparison.summary, eps), SUMMARY_COLUMNS)


def movement_table(comparison: MethodComparison) -> pd.DataFrame:
    """Per method (:func:`rtcore.runs.compare.movement_table`): how far fine-tuning moved the weights, per block and
    in total, the head's distance from its start, the parameters trained and frozen; 4 decimals."""
    t = movements(comparison)
    t = t.assign(head_init=t["head_init"].fillna("probe"), cached=t["cached"].map({True: "yes", False: "no"}))
    return t.round(4).rename(columns=MOVEMENT_COLUMNS).fillna(MISSING)


def verdict_text(comparison: MethodComparison, eps: float, norm: str) -> str:
    """Which method keeps most robustness at ``eps`` and whether the base backbone's Δ predicted it (ε and Δ
    written as on every page)."""
    v: Verdict = ordering_verdict(comparison.summary, eps)
    tau = "undefined (ties)" if math.isnan(v.kendall_tau) else f"{v.kendall_tau:+.2f}"
    return (f"At ε = {eps_text(eps, norm)}: most robust **{' = '.join(v.best)}** (robust accuracy "
            f"{v.robust_acc:.3f}); the pre-fine-tuning Δ ranks {' = '.join(v.predicted_best)} first: "
            f"**{'predicted' if v.agrees else 'not predicted'}**; Kendall's τ of the two orderings {tau}.")


def method_help() -> str:
    return "\n".join(f"- **{m}**: {d}" for m, d in METHOD_DESCRIPTIONS.items())


def recipe_note() -> str:
    return text("transfer_recipe", recipe=FineTuneRecipe())


def block_names(g: Backbone) -> list[str]:
    """The blocks ``ft-last-k`` counts from the end."""
    return [b.name for b in network_blocks(g.net)]


def task_choices(sidebar_tasks: Sequence[str]) -> tuple[list[str], int]:
    """The offline tasks, and the index of the one to open on (:func:`rtcore.runs.selection.preferred`)."""
    tasks = list_tasks(offline_only=True)
    return tasks, tasks.index(preferred(tasks, sidebar_tasks))
