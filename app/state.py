"""Sidebar choices and defaults (with ``RTCORE_DASHBOARD_*`` overrides for tests and demos), and the
labels of eps values. Every list and rule comes from the library: norms (:data:`rtcore.config.NORMS`),
the eps grid and range (:func:`rtcore.config.eps_grid`, :func:`rtcore.config.check_eps`), strengths
(:data:`rtcore.attacks.STRENGTHS`), probe kinds (:func:`rtcore.probes.list_probes`), tasks and backbones
(their registries)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from rtcore import BackboneUnavailableError, list_backbones, list_tasks, task_info
from rtcore.data import task_test_size
from rtcore.data.refs import is_user_ref
from rtcore.attacks import STRENGTHS, describe
from rtcore.config import NORMS, check_eps, default_cache_dir, eps_grid, eps_key, eps_steps
from rtcore.models import BUNDLED_DIR, read_card
from rtcore.models.registry import backbone_info
from rtcore.models.uploads import MAX_UPLOAD_BYTES as CHECKPOINT_UPLOAD_BYTES
from rtcore.probes import list_probes

log = logging.getLogger(__name__)

ENV_N, ENV_TASKS, ENV_ATTACK = "RTCORE_DASHBOARD_N", "RTCORE_DASHBOARD_TASKS", "RTCORE_DASHBOARD_ATTACK"
ENV_BACKBONE, ENV_NORM = "RTCORE_DASHBOARD_BACKBONE", "RTCORE_DASHBOARD_NORM"
NORM_LABELS: dict[str, str] = {"linf": "L∞ (linf)", "l2": "L2 (l2)"}
#: the cursor's start and the first eps computed, in grid steps: 4/255 (linf), 0.4 (l2)
DEFAULT_STEP = 4
#: an added eps beyond this many grid steps (32/255 linf, 3.2 l2) asks for confirmation first
CONFIRM_STEPS = 32
SAMPLE_SIZES: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000)
DEFAULT_N, DEFAULT_ATTACK, SEED = 200, "fast", 0
PREFERRED_BACKBONE = "fmnist-cnn-pgd-linf-0.1"
UPLOAD_CHOICE = "upload: my checkpoint (.safetensors + timm architecture)"
MAX_UPLOAD_BYTES = CHECKPOINT_UPLOAD_BYTES
MAX_UPLOAD_MB = MAX_UPLOAD_BYTES // (1024 * 1024)
BOUND_NOTE = ("The bound uses Δ(x) found by an attack (a lower estimate of the true Δ), so it is a "
              "**prediction**, not a certificate: a certified guarantee would need an upper bound on Δ. "
              "Brackets and error bars: 95 % Wilson intervals over the n test points.")
#: why the bound can never exceed the robust accuracy, in one sentence where students read it
WHY_BELOW = ("A point counts for the bound only when its margin ρ(x) exceeds Δ(x), and Δ(x) includes the feature "
             "shift of every attack image; an image that flips the prediction moves the features by at least ρ(x), "
             "so a point any attack breaks is never counted: the bound is at most the robust accuracy.")
PENDING = "computing…"
MISSING = "—"


def private(message: str) -> str:
    """``message`` without the server's own folders (the result cache, the home folder), which students need not
    see."""
    for folder, name in ((str(default_cache_dir()), "<server cache>"), (os.path.expanduser("~"), "~")):
        message = message.replace(folder, name)
    return message


def probes() -> list[str]:
    """The probe kinds, from the library's registry."""
    return list_probes()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not an integer; using %d", name, raw, default)
        return default
    return value if value >= 1 else default


def default_n() -> int:
    """Test points per task: ``$RTCORE_DASHBOARD_N`` or 200."""
    return _env_int(ENV_N, DEFAULT_N)


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


def default_attack() -> str:
    raw = os.environ.get(ENV_ATTACK, "").strip()
    return raw if raw in STRENGTHS else DEFAULT_ATTACK


def default_norm() -> str:
    raw = os.environ.get(ENV_NORM, "").strip()
    return raw if raw in NORMS else NORMS[0]


def default_tasks() -> list[str]:
    """``$RTCORE_DASHBOARD_TASKS`` (comma separated, unknown names dropped) or the offline tasks."""
    known = list_tasks()
    chosen = [t.strip() for t in os.environ.get(ENV_TASKS, "").split(",") if t.strip() in known]
    return chosen or list_tasks(offline_only=True)


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


def bundled_backbones() -> list[str]:
    return [n for n in list_backbones() if (BUNDLED_DIR / f"{n}.json").is_file()]


def default_backbone(choices: Sequence[str] | None = None) -> str:
    names = list(choices) if choices is not None else backbone_choices()
    env = os.environ.get(ENV_BACKBONE, "").strip()
    for candidate in (env, PREFERRED_BACKBONE, *bundled_backbones()):
        if candidate and candidate in names:
            return candidate
    return names[0]


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


def backbone_description(name: str) -> str:
    try:
        return backbone_info(name).description if name != UPLOAD_CHOICE else ""
    except (ValueError, BackboneUnavailableError):
        return ""


CARD_COLUMNS: dict[str, str] = {
    "method": "method", "train_norm": "train norm", "train_eps": "train ε",
    "upstream_clean_acc": "upstream clean acc", "upstream_robust_acc": "upstream robust acc",
    "upstream_eval_eps": "at ε", "description": "description"}


def card_table(names: Sequence[str]) -> pd.DataFrame:
    """One row per backbone from its model card (dashes where a card has no value)."""
    rows = []
    for name in names:
        try:
            card = read_card(name) if (BUNDLED_DIR / f"{name}.json").is_file() else {}
        except BackboneUnavailableError:
            card = {}
        row: dict[str, Any] = {"backbone": name, **{label: card.get(key) for key, label in CARD_COLUMNS.items()}}
        row["description"] = row["description"] or backbone_description(name)
        rows.append({k: MISSING if v is None or v == "" else v for k, v in row.items()})
    return pd.DataFrame(rows, columns=["backbone", *CARD_COLUMNS.values()])


def default_compare_backbones(choices: Sequence[str] | None = None) -> list[str]:
    names = list(choices) if choices is not None else backbone_choices()
    return [n for n in bundled_backbones() if n in names]


def attack_summary(name: str) -> str:
    return str(describe(name))


# ---------------------------------------------------------------- eps: the grid, labels, range

def default_eps(norm: str) -> float:
    """The cursor's starting eps: the grid value of :data:`DEFAULT_STEP` steps (4/255 or 0.4)."""
    return min(eps_grid(norm), key=lambda e: abs(eps_steps(e, norm) - DEFAULT_STEP))


def eps_options(norm: str, extras: Iterable[float] = ()) -> list[float]:
    """The cursor's positions: the library's grid plus the eps the user added, sorted."""
    return sorted({*eps_grid(norm), *(eps_key(e) for e in extras)})


def snap_eps(eps: float, options: Sequence[float]) -> float:
    """The option nearest to ``eps`` (the cursor only ever sits on computed values)."""
    return min(options, key=lambda o: abs(o - float(eps)))


def _steps_text(k: float) -> str:
    return f"{round(k):d}" if abs(k - round(k)) < 1e-6 else f"{k:.3g}"


def eps_short(eps: float, norm: str = "linf") -> str:
    """``4/255`` (linf), ``0.4`` (l2): how titles and the cursor name an eps."""
    e = float(eps)
    if e == 0:
        return "0"
    return f"{_steps_text(eps_steps(e, 'linf'))}/255" if norm == "linf" else f"{e:.4g}"


def eps_label(eps: float, norm: str = "linf") -> str:
    """``4/255 = 0.0157`` (linf), ``0.4`` (l2)."""
    e = float(eps)
    return f"{eps_short(e, norm)} = {e:.4f}" if norm == "linf" and e > 0 else eps_short(e, norm)


def eps_tick(eps: float, norm: str) -> str:
    """An eps axis tick: the number of 1/255 steps (linf) or the radius (l2)."""
    return _steps_text(eps_steps(eps, "linf")) if norm == "linf" else f"{float(eps):.4g}"


def eps_axis_title(norm: str) -> str:
    return "ε in steps of 1/255 (linf, pixels in [0, 1])" if norm == "linf" else "ε (l2 radius, pixels in [0, 1])"


def eps_unit_label(norm: str) -> str:
    return "k (ε = k/255)" if norm == "linf" else "ε (l2 radius, [0,1] pixel units)"


def eps_from_input(value: float, norm: str) -> float:
    """The eps of a typed value: k/255 for linf, the value itself for l2."""
    return eps_key(float(value) / 255 if norm == "linf" else float(value))


def check_new_eps(eps: float, norm: str) -> tuple[str, str]:
    """``(verdict, message)`` for an eps the user adds: ``ok``, ``grid`` (already on the grid: the cursor
    goes there), ``confirm`` (beyond :data:`CONFIRM_STEPS` grid steps) or ``error`` (the library's reason)."""
    try:
        e = check_eps(float(eps), norm)[0][0]
    except ValueError as err:
        hint = " (for linf type k: 8 means 8/255)" if norm == "linf" else ""
        return "error", f"{err}{hint}"
    if e <= 0:
        return "error", "ε = 0 is the clean accuracy, always shown; type a positive value"
    if e in eps_grid(norm):
        return "grid", f"ε = {eps_label(e, norm)} is on the grid: the cursor is there now."
    limit = CONFIRM_STEPS / 255 if norm == "linf" else eps_grid(norm)[1] * CONFIRM_STEPS
    if e > limit:
        return "confirm", (f"ε = {eps_label(e, norm)} is beyond {eps_label(limit, norm)}: a perturbation this large "
                           "changes the image visibly, so robustness there says little about imperceptible "
                           "attacks. Compute it for every task?")
    return "ok", f"Computing ε = {eps_label(e, norm)} for every task; the cached curves stay on screen."


def session_defaults() -> dict[str, Any]:
    """Keys and their starting values (set once per session)."""
    choices = backbone_choices()
    norm = default_norm()
    return {"backbone": default_backbone(choices), "norm": norm, "eps": default_eps(norm),
            "extra_eps": {n: [] for n in NORMS}, "tasks": default_tasks(), "n": default_n(),
            "attack": default_attack(), "probe": probes()[0], "upload_arch": "resnet18", "user_tasks": [],
            "compare_backbones": default_compare_backbones(choices), "session_token": uuid.uuid4().hex}
