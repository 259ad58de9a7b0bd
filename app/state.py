"""The sidebar's labels and the session's starting values.

The selection's defaults, choices and eps rules are the library's (:mod:`rtcore.runs.selection`); this module adds
what only the dashboard has: the upload choice, labels, the messages of the "add an eps" form and the session's
own keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rtcore import BackboneUnavailableError, list_backbones, task_info
from rtcore.config import default_cache_dir, eps_text
from rtcore.models.registry import backbone_info, card_table
from rtcore.models.uploads import MAX_UPLOAD_BYTES
from rtcore.runs import selection
from rtcore.tables import task_sizes

NORM_LABELS: dict[str, str] = {"linf": "L∞ (linf)", "l2": "L2 (l2)"}
UPLOAD_CHOICE = "upload: my checkpoint (.safetensors + timm architecture)"
MAX_UPLOAD_MB = MAX_UPLOAD_BYTES // (1024 * 1024)
#: model-card fields (:func:`rtcore.models.registry.card_table`) and their column titles
CARD_COLUMNS: dict[str, str] = {
    "method": "method", "train_norm": "train norm", "train_eps": "train ε", "upstream_clean_acc": "upstream clean acc",
    "upstream_robust_acc": "upstream robust acc", "upstream_eval_eps": "at ε", "description": "description"}


def private(message: str) -> str:
    """``message`` without the server's own folders (the result cache, the home folder), which students need not
    see."""
    for folder, name in ((str(default_cache_dir()), "<server cache>"), (os.path.expanduser("~"), "~")):
        message = message.replace(folder, name)
    return message


def sample_sizes(summary: pd.DataFrame) -> str:
    """``n = 200 test points per task``, naming each task evaluated on fewer (a small test split of your own)."""
    per_task = task_sizes(summary)
    if not per_task:
        return "no test points yet"
    top = max(per_task.values())
    fewer = [f"{task_label(t)}: {k}" for t, k in per_task.items() if k < top]
    return f"n = {top} test points per task" + (f" ({', '.join(fewer)}, its whole test split)" if fewer else "")


def check_new_eps(eps: float, norm: str) -> tuple[str, str]:
    """``(verdict, message)`` for an eps the user adds (:func:`rtcore.runs.selection.new_eps`): ``ok``, ``grid``
    (the cursor goes there), ``confirm`` or ``error`` (the library's reason; zero too)."""
    check = selection.new_eps(eps, norm)
    e, shown = check.eps, eps_text(check.eps, norm)
    if check.verdict == "error":
        return "error", check.reason + (" (for linf type k: 8 means 8/255)" if norm == "linf" else "")
    if check.verdict == "zero":
        return "error", "ε = 0 is the clean accuracy, always shown; type a positive value"
    if check.verdict == "grid":
        return "grid", f"ε = {shown} is on the grid: the cursor is there now."
    if check.verdict == "confirm":
        return "confirm", (f"ε = {shown} is beyond {eps_text(check.limit, norm)}: a perturbation this large changes "
                           "the image visibly, so robustness there says little about imperceptible attacks. Compute "
                           "it for every task?")
    return "ok", computing_text([e], norm)


def computing_text(added: Sequence[float], norm: str) -> str:
    """What happens to eps added to the grid: computed for every task, the cached curves kept on screen."""
    return f"Computing ε = {', '.join(eps_text(e, norm) for e in added)} for every task; the cached curves stay on " \
           "screen."


def task_label(ref: str) -> str:
    """A task name, with a note when its data needs a download; a user task by its short name."""
    try:
        info = task_info(ref)
    except ValueError:
        return ref
    if info.domain == "user":
        return f"{os.path.basename(ref.rstrip('/'))} (your data)"
    return ref if info.offline else f"{ref} (needs download)"


def backbone_choices() -> list[str]:
    """Every registry entry (bundled, user-registered, timm examples), then the upload option."""
    return [*list_backbones(), UPLOAD_CHOICE]


def backbone_label(name: str) -> str:
    if name == UPLOAD_CHOICE:
        return "⬆ upload a checkpoint (.safetensors + timm architecture)"
    try:
        info = backbone_info(name)
    except (ValueError, BackboneUnavailableError):
        return name
    if info.kind == "bundled":
        return name
    return f"{name} ({info.kind})" if info.offline else f"{name} (needs download)"


def card_columns(names: Sequence[str]) -> pd.DataFrame:
    """The model cards of ``names`` with column titles: eps written as on every page (k/255 for linf), accuracies
    with 3 decimals, a dash where a card has no value (no training eps without a training norm)."""
    t = card_table(names).astype(object)
    for eps, norm in (("train_eps", "train_norm"), ("upstream_eval_eps", "upstream_eval_norm")):
        t[eps] = [str(eps_text(float(e), n)) if isinstance(n, str) and pd.notna(e) else None
                  for e, n in zip(t[eps], t[norm])]
    for acc in ("upstream_clean_acc", "upstream_robust_acc"):
        t[acc] = [f"{float(v):.3f}" if pd.notna(v) else None for v in t[acc]]
    table = t.drop(columns="upstream_eval_norm").rename(columns=CARD_COLUMNS)
    return table.where(table.notna() & (table != ""), "—")


def session_defaults() -> dict[str, Any]:
    """Keys and their starting values (set once per session): the library's default selection and the session's
    own keys."""
    return {**selection.defaults(), "upload_arch": "resnet18", "user_tasks": [], "session_token": uuid.uuid4().hex}
