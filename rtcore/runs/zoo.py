"""Reading sweeps back: a sweep folder -> one tidy frame with each backbone's pretraining protocol.

:func:`load_sweep` reads ``summary.csv`` of a sweep folder (or, while a sweep is still running and has
not merged yet, its stored unit files) and adds ``protocol``: how the backbone was pretrained, from
its model card (:func:`pretraining_protocol`: ``adversarial``, ``standard``, ``self-supervised``,
``random init``, or ``unknown`` for timm and user backbones, whose cards rtcore does not have).
:func:`list_sweeps` finds the sweep folders under ``<cache>/sweeps``. On that frame: the settings a sweep varies
(:func:`sweep_settings`), the rows of one of them (:func:`select_rows`), each backbone's means
(:func:`backbone_means`) and whether the bound orders the backbones as the attack does (:func:`rank_agreement`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import file_sha256
from ..config import eps_key, resolve_cache_dir
from ..stats import spearman
from .sweep_store import read_csv

PROTOCOLS: tuple[str, ...] = ("adversarial", "standard", "self-supervised", "random init", "unknown")
#: a model card's training ``method`` -> protocol
METHOD_PROTOCOL: dict[str, str] = {
    **dict.fromkeys(("pgd", "trades", "mart", "fgsm", "free", "fast-at", "awp", "adversarial", "at"), "adversarial"),
    **dict.fromkeys(("erm", "standard", "supervised", "ce"), "standard"),
    **dict.fromkeys(("simclr", "byol", "moco", "dino", "mae", "barlow", "swav", "simsiam", "self-supervised", "ssl"),
                    "self-supervised"),
}
#: columns :func:`load_sweep` needs in a summary
NEEDED = ("backbone", "task", "eps", "robust_acc", "bound")
#: columns that identify a setting of a sweep other than backbone, task and eps
SETTINGS = ("norm", "probe", "transfer", "attack", "n", "seed")


def protocol_of_card(card: dict[str, Any]) -> str:
    """The protocol a model card states: its ``protocol``, its ``method`` (see :data:`METHOD_PROTOCOL`),
    a ``training.method`` text that starts with one of them, or its ``robust`` flag."""
    if card.get("protocol") in PROTOCOLS:
        return str(card["protocol"])
    method = card.get("method")
    if method is None and isinstance(card.get("training"), dict):
        method = card["training"].get("method")
    if isinstance(method, str):
        text = method.strip().lower()
        if text in METHOD_PROTOCOL:
            return METHOD_PROTOCOL[text]
        for key, proto in METHOD_PROTOCOL.items():
            if text.startswith(key + " ") or text.startswith(key + "-") or text.startswith(key + "("):
                return proto
    if card.get("robust") is True:
        return "adversarial"
    return "unknown"


@lru_cache(maxsize=256)
def pretraining_protocol(backbone: str) -> str:
    """How the backbone named ``backbone`` (a table's ``backbone`` column) was pretrained, from its
    model card; ``random init`` for the bundled architectures with random weights, ``unknown`` when
    rtcore has no card (timm models, user weights, registered modules)."""
    from ..models import AUTOATTACK_RESNET18, BUNDLED_DIR, read_card

    if backbone.endswith(" (random init)"):
        return "random init"
    if (BUNDLED_DIR / f"{backbone}.json").is_file():
        try:
            return protocol_of_card(read_card(backbone))
        except Exception:  # noqa: BLE001 - an unreadable card: the protocol is unknown, not an error
            return "unknown"
    if backbone == AUTOATTACK_RESNET18:
        from ..models.thirdparty import model_card

        return protocol_of_card(model_card())
    return "unknown"


def _stored_summaries(root: Path) -> pd.DataFrame:
    """The summaries of the units of ``sweep.json`` stored so far, in its order (a sweep still running): only
    units whose record names the same spec digest and whose summary matches the record's checksum."""
    try:
        units = json.loads((root / "sweep.json").read_text(encoding="utf-8"))["units"]
        wanted = [(str(u["id"]), str(u["digest"])) for u in units]
    except (OSError, ValueError, KeyError, TypeError):
        return pd.DataFrame()
    frames = []
    for uid, digest in wanted:
        summary, record = root / "units" / f"{uid}.summary.csv", root / "units" / f"{uid}.json"
        try:
            rec = json.loads(record.read_text(encoding="utf-8"))
            if rec.get("spec_digest") == digest and file_sha256(summary) == rec.get("summary_sha256"):
                frames.append(read_csv(summary))
        except (OSError, ValueError, AttributeError):
            continue  # not finished, being written, or damaged: not shown
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_sweep(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A sweep folder's summary rows (one per backbone, task, probe, transfer, eps, ...) with a
    ``protocol`` column; ``ValueError`` naming the folder when it holds no sweep results."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"sweep folder {str(root)!r} does not exist; give the --out folder of "
                         f"`python -m rtcore sweep`")
    summary, meta = root / "summary.csv", root / "sweep.json"
    current = summary.is_file() and summary.stat().st_size > 1 and (
        not meta.is_file() or summary.stat().st_mtime_ns >= meta.stat().st_mtime_ns)  # not a previous run's
    df = read_csv(summary) if current else pd.DataFrame()
    if df.empty:
        df = _stored_summaries(root)
    if df.empty:
        raise ValueError(f"sweep folder {str(root)!r} holds no finished units yet (no summary.csv, no units/*.json)")
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"{str(summary)!r} has no columns {missing}; is it the output of `python -m rtcore sweep`?")
    df = df.copy()
    df["protocol"] = [pretraining_protocol(str(b)) for b in df["backbone"]]
    return df


def list_sweeps(cache_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The sweep folders under ``<cache>/sweeps`` (those with a ``sweep.json``), newest first."""
    root = resolve_cache_dir(cache_dir).expanduser() / "sweeps"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "sweep.json").is_file()]
    return sorted(found, key=lambda p: (p / "sweep.json").stat().st_mtime, reverse=True)


def sweep_stamp(path: str | os.PathLike[str]) -> float:
    """Changes whenever the sweep folder gets new results (a rerun, a unit landing): a key for re-reading it."""
    files = [Path(path) / "summary.csv", Path(path) / "units"]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


def sweep_settings(df: pd.DataFrame) -> dict[str, list[object]]:
    """The values of each :data:`SETTINGS` column present in the frame (those with more than one are a choice)."""
    return {c: list(dict.fromkeys(df[c].tolist())) for c in SETTINGS if c in df.columns}


def select_rows(df: pd.DataFrame, choice: Mapping[str, object], tasks: Sequence[str] | None = None,
                eps: Sequence[float] | None = None) -> pd.DataFrame:
    """The rows of one setting (``choice``: column -> value) and of ``tasks`` and ``eps`` (all when None)."""
    keep = pd.Series(True, index=df.index)
    for col, value in choice.items():
        if col in df.columns:
            keep &= df[col] == value
    if tasks is not None:
        keep &= df["task"].isin(list(tasks))
    if eps is not None:
        keep &= df["eps"].map(eps_key).isin([eps_key(e) for e in eps])
    return df[keep]


def backbone_means(df: pd.DataFrame) -> pd.DataFrame:
    """Per backbone (and its protocol), most robust first: the means over the rows of ``clean_acc``, ``robust_acc``
    and ``bound``, ``gap`` = robust_acc - bound (how conservative the bound is for it) and ``points`` (rows)."""
    cols = [c for c in ("clean_acc", "robust_acc", "bound") if c in df.columns]
    out = df.groupby(["backbone", "protocol"], sort=False)[cols].mean().reset_index()
    out["gap"] = out["robust_acc"] - out["bound"]
    out["points"] = df.groupby(["backbone", "protocol"], sort=False).size().to_numpy()
    return out.sort_values("robust_acc", ascending=False).reset_index(drop=True)


def rank_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Per (task, eps) with at least three backbones: ``spearman``, the rank correlation of the backbones' bound
    and robust accuracy (1: the bound orders them as the attack does; NaN where either is the same for every
    backbone, e.g. a bound of 0 everywhere)."""
    rows = [{"task": task, "eps": eps, "backbones": int(g["backbone"].nunique()),
             "spearman": spearman(g["bound"].tolist(), g["robust_acc"].tolist())}
            for (task, eps), g in df.groupby(["task", "eps"], sort=False) if g["backbone"].nunique() >= 3]
    return pd.DataFrame(rows, columns=["task", "eps", "backbones", "spearman"])
