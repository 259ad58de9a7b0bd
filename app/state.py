"""Session defaults, the sidebar's choices and their labels.

The default selection is the spec of ``assets/classroom.toml`` (the one a class warms the cache with, so a warm cache
is the landing page's), with ``RTCORE_DASHBOARD_*`` overrides for tests and demos. Every list and rule comes from the
library: norms, the eps grid, strengths, probe kinds, tasks and backbones (their registries), model cards.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from rtcore import BackboneUnavailableError, list_backbones, list_tasks, task_info
from rtcore.attacks import STRENGTHS
from rtcore.config import ASSETS_DIR, NORMS, check_eps, default_cache_dir, default_eps, eps_grid, eps_key, eps_text
from rtcore.data import task_test_size
from rtcore.data.refs import is_user_ref
from rtcore.models.registry import backbone_info, card_table
from rtcore.models.uploads import MAX_UPLOAD_BYTES
from rtcore.probes import list_probes
from rtcore.runs import EvalSpec, load_spec

log = logging.getLogger(__name__)

ENV_N, ENV_TASKS, ENV_ATTACK = "RTCORE_DASHBOARD_N", "RTCORE_DASHBOARD_TASKS", "RTCORE_DASHBOARD_ATTACK"
ENV_BACKBONE, ENV_NORM = "RTCORE_DASHBOARD_BACKBONE", "RTCORE_DASHBOARD_NORM"
CLASSROOM = ASSETS_DIR / "classroom.toml"
NORM_LABELS: dict[str, str] = {"linf": "L∞ (linf)", "l2": "L2 (l2)"}
SAMPLE_SIZES: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000)
UPLOAD_CHOICE = "upload: my checkpoint (.safetensors + timm architecture)"
MAX_UPLOAD_MB = MAX_UPLOAD_BYTES // (1024 * 1024)
#: model-card fields (:func:`rtcore.models.registry.card_table`) and their column titles
CARD_COLUMNS: dict[str, str] = {
    "method": "method", "train_norm": "train norm", "train_eps": "train ε", "upstream_clean_acc": "upstream clean acc",
    "upstream_robust_acc": "upstream robust acc", "upstream_eval_eps": "at ε", "description": "description"}


@functools.cache
def classroom() -> EvalSpec:
    """The default selection: the spec of ``assets/classroom.toml``."""
    return load_spec(CLASSROOM)


def _env(name: str, valid: Callable[[str], bool], default: Any) -> Any:
    """``$name`` when set and valid, else ``default`` (an invalid value is logged)."""
    raw = os.environ.get(name, "").strip()
    if raw and not valid(raw):
        log.warning("%s=%r is not valid here; using %r", name, raw, default)
    return raw if raw and valid(raw) else default


def private(message: str) -> str:
    """``message`` without the server's own folders (the result cache, the home folder), which students need not
    see."""
    for folder, name in ((str(default_cache_dir()), "<server cache>"), (os.path.expanduser("~"), "~")):
        message = message.replace(folder, name)
    return message


def default_n() -> int:
    """Test points per task: ``$RTCORE_DASHBOARD_N`` or the classroom spec's."""
    return int(_env(ENV_N, lambda r: r.isdigit() and int(r) >= 1, classroom().n))


def default_attack() -> str:
    return str(_env(ENV_ATTACK, lambda r: r in STRENGTHS, classroom().strength))


def default_norm() -> str:
    return str(_env(ENV_NORM, lambda r: r in NORMS, classroom().norm))


def default_tasks() -> list[str]:
    """``$RTCORE_DASHBOARD_TASKS`` (comma separated, unknown names dropped) or the classroom spec's."""
    known = list_tasks()
    chosen = [t.strip() for t in os.environ.get(ENV_TASKS, "").split(",") if t.strip() in known]
    return chosen or list(classroom().tasks)


def default_backbone(choices: Sequence[str] | None = None) -> str:
    """``$RTCORE_DASHBOARD_BACKBONE``, the classroom spec's, or the first bundled backbone among ``choices``."""
    names = list(choices) if choices is not None else backbone_choices()
    env = os.environ.get(ENV_BACKBONE, "").strip()
    candidates = (env, classroom().backbone.name, *list_backbones(kind="bundled"))
    return next((c for c in candidates if c and c in names), names[0])


def sample_sizes(summary: pd.DataFrame) -> str:
    """``n = 200 test points per task``, naming each task evaluated on fewer (a small test split of your own)."""
    per_task = summary.drop_duplicates("task").set_index("task")["n"].astype(int) if len(summary) else pd.Series()
    if per_task.empty:
        return "no test points yet"
    top = int(per_task.max())
    fewer = [f"{task_label(t)}: {k}" for t, k in per_task.items() if k < top]
    return f"n = {top} test points per task" + (f" ({', '.join(fewer)}, its whole test split)" if fewer else "")


def sample_size_options(cap: int | None = None) -> list[int]:
    """The choices of n, up to ``cap`` (the smallest test split of the tasks chosen, see :func:`n_cap`)."""
    options = sorted({*SAMPLE_SIZES, default_n()})
    return [o for o in options if cap is None or o <= cap] or options[:1]


def n_cap(tasks: Iterable[str]) -> int | None:
    """The smallest test split among your own tasks in ``tasks`` (n may not exceed it), None without one."""
    sizes = [task_test_size(t) for t in tasks if is_user_ref(t)]
    return min((k for k in sizes if k), default=None)


def eps_options(norm: str, extras: Iterable[float] = ()) -> list[float]:
    """The cursor's positions: the library's grid plus the eps the user added, sorted."""
    return sorted({*eps_grid(norm), *(eps_key(e) for e in extras)})


#: an added eps beyond this many grid steps (32/255 linf, 3.2 l2) asks for confirmation first
CONFIRM_STEPS = 32


def eps_from_input(value: float, norm: str) -> float:
    """The eps of a typed value: k/255 for linf, the value itself for l2."""
    return eps_key(float(value) / 255 if norm == "linf" else float(value))


def check_new_eps(eps: float, norm: str) -> tuple[str, str]:
    """``(verdict, message)`` for an eps the user adds: ``ok``, ``grid`` (already on the grid: the cursor
    goes there), ``confirm`` (beyond :data:`CONFIRM_STEPS` grid steps) or ``error`` (the library's reason)."""
    try:
        e = check_eps(float(eps), norm)[0][0]
    except ValueError as err:
        return "error", f"{err}" + (" (for linf type k: 8 means 8/255)" if norm == "linf" else "")
    if e <= 0:
        return "error", "ε = 0 is the clean accuracy, always shown; type a positive value"
    if e in eps_grid(norm):
        return "grid", f"ε = {eps_text(e, norm)} is on the grid: the cursor is there now."
    limit = eps_grid(norm, (CONFIRM_STEPS,))[0]
    if e > limit:
        return "confirm", (f"ε = {eps_text(e, norm)} is beyond {eps_text(limit, norm)}: a perturbation this large "
                           "changes the image visibly, so robustness there says little about imperceptible attacks. "
                           "Compute it for every task?")
    return "ok", f"Computing ε = {eps_text(e, norm)} for every task; the cached curves stay on screen."


def task_label(ref: str) -> str:
    """A task name, with a note when its data needs a download; a user task by its short name."""
    try:
        info = task_info(ref)
    except ValueError:
        return ref
    if info.domain == "user":
        return f"{ref.split(':', 1)[0]}: {os.path.basename(ref.rstrip('/'))} (your data)"
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
    """The model cards of ``names`` with column titles, a dash where a card has no value."""
    table = card_table(names).rename(columns=CARD_COLUMNS).astype(object)
    return table.where(table.notna() & (table != ""), "—")


def choices() -> dict[str, list[Any]]:
    """The values each single-valued key of the selection may take here (what the sidebar offers, a link may set)."""
    return {"backbone": [b for b in backbone_choices() if b != UPLOAD_CHOICE], "norm": list(NORMS),
            "attack": list(STRENGTHS), "probe": list_probes(), "n": sample_size_options()}


def session_defaults() -> dict[str, Any]:
    """Keys and their starting values (set once per session)."""
    choices = backbone_choices()
    norm = default_norm()
    return {"backbone": default_backbone(choices), "norm": norm, "eps": default_eps(norm),
            "extra_eps": {n: [] for n in NORMS}, "tasks": default_tasks(), "n": default_n(),
            "attack": default_attack(), "probe": classroom().probe, "upload_arch": "resnet18", "user_tasks": [],
            "compare_backbones": [n for n in list_backbones(kind="bundled") if n in choices],
            "session_token": uuid.uuid4().hex}
