"""Sidebar defaults and choices, with environment overrides ``RTCORE_DASHBOARD_*`` for tests and demos;
the eps grid, its labels and the range checks of the eps control."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

import rtcore
from rtcore import (
    PRESETS,
    BackboneUnavailableError,
    backbone_specs,
    list_tasks,
    task_info,
)
from rtcore.config import NORMS, eps_key, eps_steps
from rtcore.config import eps_grid as _library_grid
from rtcore.models import (
    BUNDLED_DIR,
    read_card,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- defaults and choices

ENV_N = "RTCORE_DASHBOARD_N"
ENV_TASKS = "RTCORE_DASHBOARD_TASKS"
ENV_ATTACK = "RTCORE_DASHBOARD_ATTACK"
ENV_BACKBONE = "RTCORE_DASHBOARD_BACKBONE"
ENV_NORM = "RTCORE_DASHBOARD_NORM"

NORM_LABELS: dict[str, str] = {"linf": "L∞ (linf)", "l2": "L2 (l2)"}
#: the default eps (the cursor's start and the first eps computed): 4/255 (linf), 0.4 (l2)
DEFAULT_STEP = 4
#: above these an eps asks for confirmation (32/255 linf, 3 for l2 on [0,1] images)
SENSIBLE_MAX: dict[str, float] = {"linf": eps_key(32 / 255), "l2": 3.0}
SAMPLE_SIZES: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000)
DEFAULT_N = 200
DEFAULT_ATTACK = "fast"
PREFERRED_BACKBONE = "fmnist-cnn-pgd-linf-0.1"
UPLOAD_CHOICE = "upload: my checkpoint (.safetensors + timm architecture)"
MAX_UPLOAD_MB = 200
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
SEED = 0
PROBES: tuple[str, ...] = ("logistic", "logistic-std", "robust")
PROBE_LABELS: dict[str, str] = {
    "logistic": "logistic (raw-space penalty, C on held-out data)",
    "logistic-std": "logistic-std (penalty on standardised weights)",
    "robust": "robust (Δ-aware: trained against feature shifts of radius r)",
}
#: every strength the library offers (the other worker's list when present, else the presets)
STRENGTHS: tuple[str, ...] = tuple(getattr(rtcore, "STRENGTHS", None) or PRESETS)
BOUND_NOTE = (
    "The bound uses Δ(x) found by an attack (a lower estimate of the true Δ), so it is a "
    "**prediction**, not a certificate: a certified guarantee would need an upper bound on Δ."
)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        log.warning("%s=%r is not an integer; using %d", name, raw, default)
        return default
    return value if value >= 1 else default


def default_n() -> int:
    """Test points per task: ``$RTCORE_DASHBOARD_N`` or 200."""
    return _env_int(ENV_N, DEFAULT_N)


def sample_size_options(default: int | None = None) -> list[int]:
    """The sample-size choices, always including the default."""
    d = default_n() if default is None else default
    return sorted(set(SAMPLE_SIZES) | {d})


def default_attack() -> str:
    """``$RTCORE_DASHBOARD_ATTACK`` if it names a strength, else ``fast``."""
    raw = os.environ.get(ENV_ATTACK, "").strip()
    return raw if raw in STRENGTHS else DEFAULT_ATTACK


def default_norm() -> str:
    """``$RTCORE_DASHBOARD_NORM`` if valid, else ``linf``."""
    raw = os.environ.get(ENV_NORM, "").strip()
    return raw if raw in NORMS else "linf"


def default_tasks() -> list[str]:
    """``$RTCORE_DASHBOARD_TASKS`` (comma separated, unknown names dropped) or the offline tasks."""
    known = list_tasks()
    raw = os.environ.get(ENV_TASKS, "").strip()
    if raw:
        chosen = [t.strip() for t in raw.split(",") if t.strip() in known]
        if chosen:
            return chosen
        log.warning("%s=%r names no known task; known: %s", ENV_TASKS, raw, known)
    return list_tasks(offline_only=True)


def task_label(name: str) -> str:
    """A task name with a note when its data needs a download."""
    try:
        return name if task_info(name).offline else f"{name} (needs download)"
    except ValueError:
        return name


def backbone_choices() -> list[str]:
    """Every registry entry (bundled, user-registered, timm examples), then the upload option."""
    return [*backbone_specs(), UPLOAD_CHOICE]


def bundled_backbones() -> list[str]:
    """Names of the bundled backbones (model cards in ``assets/backbones``)."""
    return [n for n, s in backbone_specs().items() if s.kind == "bundled"]


def default_backbone(choices: Sequence[str] | None = None) -> str:
    """``$RTCORE_DASHBOARD_BACKBONE`` if valid, else ``fmnist-cnn-pgd-linf-0.1`` if present,
    else the first bundled backbone, else the first registry entry."""
    names = list(choices) if choices is not None else backbone_choices()
    env = os.environ.get(ENV_BACKBONE, "").strip()
    if env and env in names:
        return env
    if PREFERRED_BACKBONE in names:
        return PREFERRED_BACKBONE
    bundled = [n for n in bundled_backbones() if n in names]
    return bundled[0] if bundled else names[0]


def backbone_label(name: str) -> str:
    """Select-box label: the name and whether it works offline."""
    if name == UPLOAD_CHOICE:
        return "⬆ upload a checkpoint (.safetensors + timm architecture)"
    spec = backbone_specs().get(name)
    if spec is None or spec.kind == "bundled":
        return name
    return f"{name} ({spec.kind})" if spec.offline else f"{name} (needs download)"


def backbone_description(name: str) -> str:
    """The registry description of a backbone (empty for the upload option)."""
    spec = backbone_specs().get(name)
    return spec.description if spec is not None else ""


def backbone_card(name: str) -> dict[str, Any]:
    """The model card of a bundled backbone, or an empty dict for other kinds."""
    if not (BUNDLED_DIR / f"{name}.json").is_file():
        return {}
    try:
        return read_card(name)
    except BackboneUnavailableError:
        return {}


CARD_COLUMNS: dict[str, str] = {
    "method": "method", "train_norm": "train norm", "train_eps": "train ε",
    "upstream_clean_acc": "upstream clean acc", "upstream_robust_acc": "upstream robust acc",
    "upstream_eval_eps": "at ε", "upstream_eval_norm": "at norm", "feature_dim": "feature dim",
    "description": "description",
}


def card_table(names: Sequence[str]) -> pd.DataFrame:
    """One row per backbone from its model card: recipe, training eps, upstream accuracies."""
    rows = []
    for name in names:
        card = backbone_card(name)
        row: dict[str, Any] = {"backbone": name}
        row.update({label: card.get(key) for key, label in CARD_COLUMNS.items()})
        if not card:
            row["description"] = backbone_description(name)
        if row["train norm"] is None and card:
            row["train norm"] = "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=["backbone", *CARD_COLUMNS.values()])


def default_compare_backbones(choices: Sequence[str] | None = None) -> list[str]:
    """Compare page default: every bundled backbone (standard, adversarial, self-supervised)."""
    names = list(choices) if choices is not None else backbone_choices()
    return [n for n in bundled_backbones() if n in names]


def attack_summary(name: str) -> str:
    """What an attack strength runs, in words (the library's own description when it has one)."""
    try:
        from rtcore.attacks import describe  # type: ignore[attr-defined]

        return str(describe(name))
    except (ImportError, ValueError, KeyError):
        s = PRESETS[name]
        runs = "+".join(s.losses) + (f" + {s.targets} targeted" if s.targets else "")
        return (f"{s.steps} PGD steps; end-to-end: {s.restarts} restart(s) × ({runs}); "
                f"feature attack: {s.feature_restarts} start(s)")


# ---------------------------------------------------------------- eps: the grid, labels, range

def eps_grid(norm: str) -> tuple[float, ...]:
    """The computed eps grid of a norm: k/255 (linf) or k·0.1 (l2), k in 0, 1, 2, 4, 8, 16, without
    the values the library refuses to evaluate (its eps check stops at 1, which drops l2's 1.6)."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {list(NORMS)}")
    return tuple(e for e in _library_grid(norm) if library_accepts(e) is None)


def library_accepts(eps: float) -> str | None:
    """None when ``rtcore`` evaluates ``eps``, else its reason."""
    from rtcore.config import check_eps

    try:
        check_eps(float(eps))
    except ValueError as e:
        return str(e)
    return None


def default_eps(norm: str) -> float:
    """The cursor's starting eps: exactly 4/255 (linf) or 0.4 (l2), a grid value."""
    from rtcore.config import L2_UNIT

    target = DEFAULT_STEP / 255 if norm == "linf" else DEFAULT_STEP * L2_UNIT
    return snap_eps(eps_key(target), eps_grid(norm))


def eps_options(norm: str, extras: Iterable[float] = ()) -> list[float]:
    """The cursor's positions: the grid plus the eps the user added, sorted."""
    return sorted({*eps_grid(norm), *(eps_key(e) for e in extras)})


def snap_eps(eps: float, options: Sequence[float]) -> float:
    """The option nearest to ``eps`` (the cursor only ever sits on computed values)."""
    return min(options, key=lambda o: abs(o - float(eps)))


def _steps_text(k: float) -> str:
    return f"{round(k):d}" if abs(k - round(k)) < 1e-6 else f"{k:.3g}"


def eps_label(eps: float, norm: str = "linf") -> str:
    """``2/255 = 0.0078`` (linf), ``0.4`` (l2); an off-grid linf eps as ``0.05 = 12.8/255``."""
    e = float(eps)
    if e == 0:
        return "0"
    if norm == "l2":
        return f"{e:.4g}"
    k = eps_steps(e, "linf")
    if abs(k - round(k)) < 1e-6:
        return f"{round(k):d}/255 = {e:.4f}"
    return f"{e:.4g} = {_steps_text(k)}/255"


def eps_short(eps: float, norm: str = "linf") -> str:
    """A compact label for axes and titles: ``2/255`` (linf grid values), else the decimal."""
    e = float(eps)
    if norm == "linf" and e > 0:
        k = eps_steps(e, "linf")
        if abs(k - round(k)) < 1e-6:
            return f"{round(k):d}/255"
    return f"{e:.4g}"


def eps_unit_label(norm: str) -> str:
    """What the number typed into the 'add an eps' field means."""
    return "k (ε = k/255)" if norm == "linf" else "ε (l2 radius, [0,1] pixel units)"


def eps_from_input(value: float, norm: str) -> float:
    """The eps of a typed value: k/255 for linf, the value itself for l2."""
    return eps_key(float(value) / 255 if norm == "linf" else float(value))


def check_new_eps(eps: float, norm: str) -> tuple[str, str]:
    """``(verdict, message)`` for an eps the user wants to add: ``ok``, ``grid`` (already computed),
    ``confirm`` (beyond a sensible range for the norm) or ``error``."""
    e = float(eps)
    refused = library_accepts(e)
    if e <= 0 or refused:
        return "error", (refused or f"ε = {e:g} is not positive") + (" (for linf type k: 8 means 8/255)"
                                                                     if norm == "linf" else "")
    if any(abs(e - g) < 1e-9 for g in eps_grid(norm)):
        return "grid", f"ε = {eps_label(e, norm)} is already on the grid: move the ε slider there."
    if e > SENSIBLE_MAX[norm]:
        return "confirm", (f"ε = {eps_label(e, norm)} is beyond {eps_label(SENSIBLE_MAX[norm], norm)}, "
                           "where images change visibly and every probe is broken. Compute it anyway?")
    return "ok", f"ε = {eps_label(e, norm)} will be computed for every task; the cached curves stay on screen."


def session_defaults() -> dict[str, Any]:
    """Keys and their starting values (``app.py`` sets them once per session)."""
    choices = backbone_choices()
    norm = default_norm()
    return {
        "backbone": default_backbone(choices),
        "norm": norm,
        "eps": default_eps(norm),
        "extra_eps": {n: [] for n in NORMS},
        "tasks": default_tasks(),
        "n": default_n(),
        "attack": default_attack(),
        "upload_arch": "resnet18",
        "compare_backbones": default_compare_backbones(choices),
        "session_token": uuid.uuid4().hex,
    }
