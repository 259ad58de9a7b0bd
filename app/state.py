"""Sidebar defaults and choices, with environment overrides ``RTCORE_DASHBOARD_*`` for tests and demos."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rtcore import (
    PRESETS,
    BackboneUnavailableError,
    backbone_specs,
    list_tasks,
    task_info,
)
from rtcore.config import NORMS
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
EPS_GRIDS: dict[str, tuple[float, ...]] = {
    "linf": (0.0, 0.01, 0.02, 0.03, 0.05, 0.1),
    "l2": (0.0, 0.1, 0.25, 0.5, 0.75, 1.0),
}
DEFAULT_EPS: dict[str, float] = {"linf": 0.03, "l2": 0.5}
SAMPLE_SIZES: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000)
DEFAULT_N = 200
DEFAULT_ATTACK = "fast"
PREFERRED_BACKBONE = "fmnist-cnn-pgd-linf-0.1"
UPLOAD_CHOICE = "upload: my checkpoint (.safetensors + timm architecture)"
MAX_UPLOAD_MB = 200
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
SEED = 0
EPS_DECIMALS = 6
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
    """Test points per task: ``$RTCORE_DASHBOARD_N`` or 200 (a first plot in about a minute on 2 CPU cores)."""
    return _env_int(ENV_N, DEFAULT_N)


def sample_size_options(default: int | None = None) -> list[int]:
    """The sample-size choices, always including the default."""
    d = default_n() if default is None else default
    return sorted(set(SAMPLE_SIZES) | {d})


def default_attack() -> str:
    """``$RTCORE_DASHBOARD_ATTACK`` if it names a preset, else ``fast``."""
    raw = os.environ.get(ENV_ATTACK, "").strip()
    return raw if raw in PRESETS else DEFAULT_ATTACK


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


def default_eps(norm: str) -> float:
    """The slider's starting eps for a norm (linf 0.03 ≈ 8/255, l2 0.5)."""
    return DEFAULT_EPS[norm]


def eps_grid(norm: str) -> tuple[float, ...]:
    """The fixed eps grid of a norm (curves are drawn over it)."""
    if norm not in EPS_GRIDS:
        raise ValueError(f"norm={norm!r} is not one of {list(EPS_GRIDS)}")
    return EPS_GRIDS[norm]


def round_eps(eps: float) -> float:
    """Eps rounded to 6 decimals, so that slider floats hit the same cache entries."""
    return round(float(eps), EPS_DECIMALS) + 0.0


def eps_to_evaluate(norm: str, current: float) -> tuple[float, ...]:
    """The grid of ``norm`` plus the current slider eps, sorted and without duplicates."""
    return tuple(sorted({round_eps(e) for e in (*eps_grid(norm), current)}))


def eps_label(eps: float) -> str:
    """``0.0314 (= 8/255)``: eps in [0,1] pixel units and in 1/255 steps."""
    k = eps * 255
    k_txt = f"{round(k):d}" if abs(k - round(k)) < 0.05 else f"{k:.1f}"
    return f"{eps:.4g} (= {k_txt}/255)"


def attack_summary(name: str) -> str:
    """What an attack preset runs, in words (steps, restarts, losses, targeted runs)."""
    s = PRESETS[name]
    runs = "+".join(s.losses) + (f" + {s.targets} targeted" if s.targets else "")
    return (f"{s.steps} PGD steps; end-to-end: {s.restarts} restart(s) × ({runs}); "
            f"feature attack: {s.feature_restarts} start(s)")


def session_defaults() -> dict[str, Any]:
    """Widget keys and their starting values (``app.py`` sets them once per session)."""
    choices = backbone_choices()
    norm = default_norm()
    return {
        "backbone": default_backbone(choices),
        "norm": norm,
        "eps": default_eps(norm),
        "tasks": default_tasks(),
        "n": default_n(),
        "attack": default_attack(),
        "upload_arch": "resnet18",
        "compare_backbones": default_compare_backbones(choices),
        "session_token": uuid.uuid4().hex,
    }

