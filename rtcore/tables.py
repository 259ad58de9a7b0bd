"""Tidy tables from stored features: one row per test point and eps, and a summary per (task, eps).

Every quantity is computed in float64 by :mod:`rtcore.bounds` from the clean features, the head
and the features of the attacks' witnesses. Consistency: every witness ``x'`` found by any attack
lies in the ball, so ``Delta(x)`` is raised to its shift ``||g(x') - g(x)||`` and ``Delta_P(x)`` to
its projected shift; a point counts as robust only if no witness flips it. This makes
``bound <= bound_head <= robust_acc <= clean_acc`` and
``clean_loss <= adv_loss <= loss_bound_lse <= loss_bound`` hold on every row by construction.

Monotone in eps: each eps is attacked on its own (:mod:`rtcore.cached`); a witness found at a
smaller eps lies in every larger ball, so :func:`carry_witnesses` lets it replace a larger eps'
witness of the same attack wherever it is better (larger shift, projected shift or loss; a flip
where the larger eps found none). The result depends only on the set of eps in the table, never
on how their attacks were grouped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from .bounds import (
    bound_criterion,
    consistent_delta,
    cross_entropy,
    head_projector,
    loss_bound,
    loss_bound_lse,
    margins,
)
from .config import eps_mask
from .data import Task
from .probes import LinearProbe
from .stats import wilson_interval

BOUND_KIND = "attack estimate"  # Delta from an attack: the bound is a prediction, not a certificate
GROUP = ["backbone", "task", "transfer", "probe", "norm", "eps"]
#: the shares of the summary (each a share of its n test points) and the per-sample column each counts;
#: each gets a 95 % Wilson interval ``<share>_lo`` / ``<share>_hi`` (:func:`rtcore.stats.wilson_interval`)
SHARES: dict[str, str] = {"clean_acc": "correct", "robust_acc": "robust", "bound": "criterion_met",
                          "bound_head": "criterion_met_head", "bound_mean_delta": "_criterion_mean_delta",
                          "bound_feature_only": "criterion_met_feature_only"}

#: the witnesses of one eps: attack name -> features g(x') (N, m)
Witnesses = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class HeadInfo:
    """What the rows record about the head."""

    kind: str
    C: float
    radius: float
    transfer: str = "lp"


def carry_witnesses(witnesses: Mapping[float, Witnesses], f0: torch.Tensor, y: torch.Tensor,
                    probe: LinearProbe) -> dict[float, dict[str, torch.Tensor]]:
    """Per attack, along increasing eps: where the witness of the next smaller eps is better, use it.

    Better means, per attack: ``feature`` a larger ``||g(x') - g(x)||``; ``head`` a larger projected
    shift ``||P (g(x') - g(x))||``; ``e2e`` a misclassification where the larger eps has none; ``ce``
    a larger cross-entropy. Ties keep the larger eps' own witness. Returns new dicts (inputs unchanged).
    """
    w, b = probe.weight_.double(), probe.bias_.double()
    P = head_projector(probe.weight_)
    f0d = f0.double()
    scores = {
        "feature": lambda f: (f.double() - f0d).norm(dim=1),
        "head": lambda f: ((f.double() - f0d) @ P).norm(dim=1),
        "e2e": lambda f: ((f.double() @ w.T + b).argmax(1) != y).double(),
        "ce": lambda f: cross_entropy(f.double() @ w.T + b, y),
    }
    out: dict[float, dict[str, torch.Tensor]] = {}
    prev: dict[str, torch.Tensor] = {}
    for e in sorted(witnesses):
        cur = dict(witnesses[e])
        for name, f in cur.items():
            if name in prev:
                take = scores[name](prev[name]) > scores[name](f)
                if bool(take.any()):
                    f = f.clone()
                    f[take] = prev[name][take]
                cur[name] = f
        out[e] = cur
        prev = cur
    return {e: out[e] for e in witnesses}


def task_rows(backbone_name: str, task: Task, idx: torch.Tensor, norm: str, f0: torch.Tensor, probe: LinearProbe,
              head: HeadInfo, witnesses: Mapping[float, Witnesses]) -> pd.DataFrame:
    """Per-sample rows of one task for every eps in ``witnesses``.

    ``witnesses[eps]`` holds ``feature`` (the feature attack) and ``e2e`` (the end-to-end attack),
    and may hold ``head`` (the head-subspace feature attack) and ``ce`` (the cross-entropy attack);
    smaller eps' witnesses are carried over first (:func:`carry_witnesses`).
    """
    y = task.y_test[idx]
    witnesses = carry_witnesses(witnesses, f0, y, probe)
    w, b = probe.weight_, probe.bias_
    P = head_projector(w)
    f0d = f0.double()

    def logits(f: torch.Tensor) -> torch.Tensor:
        return f.double() @ w.double().T + b.double()

    z0 = logits(f0)
    clean_loss = cross_entropy(z0, y)
    correct = z0.argmax(1) == y
    rho = margins(f0, y, w, b)
    frames = []
    for e, wit in witnesses.items():
        shifts = {name: f.double() - f0d for name, f in wit.items()}
        full = {name: s.norm(dim=1) for name, s in shifts.items()}
        proj = {name: (s @ P).norm(dim=1) for name, s in shifts.items()}
        delta = consistent_delta(full["feature"], *(v for k, v in full.items() if k != "feature"))
        delta_p = consistent_delta(*proj.values())
        robust = correct.clone()
        adv_loss = clean_loss.clone()
        for f in wit.values():
            z = logits(f)
            robust &= z.argmax(1) == y
            adv_loss = torch.maximum(adv_loss, cross_entropy(z, y))
        frames.append(pd.DataFrame({
            "backbone": backbone_name, "task": task.name, "transfer": head.transfer, "probe": head.kind, "norm": norm,
            "eps": e,
            "sample": idx.numpy(), "label": y.numpy(), "pred": z0.argmax(1).numpy(), "correct": correct.numpy(),
            "rho": rho.numpy(), "delta_feature": full["feature"].numpy(), "delta_e2e": full["e2e"].numpy(),
            "delta": delta.numpy(), "delta_head": delta_p.numpy(),
            "criterion_met": bound_criterion(f0, y, w, b, delta).numpy(),
            "criterion_met_feature_only": bound_criterion(f0, y, w, b, full["feature"]).numpy(),
            "criterion_met_head": bound_criterion(f0, y, w, b, delta_p).numpy(),
            "robust": robust.numpy(), "clean_loss": clean_loss.numpy(), "adv_loss": adv_loss.numpy(),
            "loss_bound": loss_bound(f0, y, w, b, delta).numpy(),
            "loss_bound_lse": loss_bound_lse(f0, y, w, b, delta).numpy(),
            "feature_norm": f0d.norm(dim=1).numpy(),
        }))
    out = pd.concat(frames, ignore_index=True)
    out["probe_C"], out["probe_radius"] = head.C, head.radius
    return out


def summarise(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, task, transfer, probe, norm, eps) from the per-sample table.

    ``bound_mean_delta`` is the paper's expectation form, ``mean 1[rho(x) > mean Delta]``: a
    heuristic, not a per-sample guarantee (it can exceed ``robust_acc``).

    Each share of :data:`SHARES` is followed (after ``bound_kind``) by its 95 % Wilson interval
    over the n test points, ``<share>_lo`` and ``<share>_hi``.
    """
    g = samples.groupby(GROUP, sort=False)
    rel = samples["delta"] / samples["feature_norm"].where(samples["feature_norm"] > 0)
    mean_delta = g["delta"].transform("mean")
    out = pd.DataFrame({
        "n": g.size(),
        "clean_acc": g["correct"].mean(),
        "robust_acc": g["robust"].mean(),
        "bound": g["criterion_met"].mean(),
        "bound_head": g["criterion_met_head"].mean(),
        "bound_mean_delta": (samples["rho"] > mean_delta).groupby([samples[c] for c in GROUP], sort=False).mean(),
        "bound_feature_only": g["criterion_met_feature_only"].mean(),
        "mean_delta": g["delta"].mean(),
        "median_delta": g["delta"].median(),
        "mean_delta_head": g["delta_head"].mean(),
        "mean_delta_feature": g["delta_feature"].mean(),
        "mean_relative_delta": rel.groupby([samples[c] for c in GROUP], sort=False).mean(),
        "clean_loss": g["clean_loss"].mean(),
        "adv_loss": g["adv_loss"].mean(),
        "loss_bound_lse": g["loss_bound_lse"].mean(),
        "loss_bound": g["loss_bound"].mean(),
        "probe_C": g["probe_C"].first(),
        "probe_radius": g["probe_radius"].first(),
    }).reset_index()
    out["bound_kind"] = BOUND_KIND
    counts = samples.assign(_criterion_mean_delta=samples["rho"] > mean_delta).groupby(GROUP, sort=False)
    n = out["n"].to_numpy()
    for share, column in SHARES.items():
        lo, hi = wilson_interval(counts[column].sum().to_numpy(dtype=float), n)
        out[f"{share}_lo"], out[f"{share}_hi"] = lo, hi
    return out


def at_eps(table: pd.DataFrame, eps: float) -> pd.DataFrame:
    """The rows of ``table`` at ``eps`` (matched as every table matches eps: :func:`rtcore.config.eps_mask`)."""
    return table[eps_mask(table["eps"], eps)] if len(table) else table


def table_norm(table: pd.DataFrame, default: str = "linf") -> str:
    """The one norm of ``table``'s rows; ``default`` for an empty table or one that mixes norms."""
    norms = table["norm"].unique() if "norm" in table.columns and len(table) else []
    return str(norms[0]) if len(norms) == 1 else default


def task_sizes(summary: pd.DataFrame) -> dict[str, int]:
    """The test points of each task in ``summary`` (n; your own task may have fewer: its whole test split)."""
    return {str(t): int(k) for t, k in summary.drop_duplicates("task")[["task", "n"]].itertuples(index=False)} \
        if len(summary) else {}


def head_masked(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``bound_head`` missing (NaN) where the head-subspace attack has not run yet (there it
    says nothing new); as it is without those columns."""
    if "bound_head" not in summary or "head_attack" not in summary:
        return summary
    return summary.assign(bound_head=summary["bound_head"].where(summary["head_attack"].astype(bool)))


def in_order(table: pd.DataFrame, key: str, order: Sequence[str], fill: object,
             known: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of ``table`` in the ``order`` of their ``key`` (rows whose key it does not name after them), with a
    row for each key it names that ``table`` lacks: every column ``fill`` but the values ``known`` (a frame with a
    ``key`` column) has for it."""
    missing = [k for k in order if k not in set(table[key])]
    if missing:
        extra = pd.DataFrame({c: [fill] * len(missing) for c in table.columns}).assign(**{key: missing})
        if known is not None:
            extra.update(extra[[key]].merge(known, on=key, how="left").drop(columns=key))
        table = pd.concat([table, extra], ignore_index=True)
    rank = {k: i for i, k in enumerate(order)}
    return table.iloc[sorted(range(len(table)), key=lambda i: rank.get(table[key].iloc[i], len(rank)))] \
        .reset_index(drop=True)


def concat_tables(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty ``frames`` one below the other (the only one itself, not a copy; empty if none): the one
    merge of tables computed in parts (a job's executors, a sweep's units)."""
    frames = [f for f in frames if not f.empty]
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()


def fill_rows(new: pd.DataFrame, old: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``new`` plus the rows of ``old`` whose ``keys`` it lacks (an earlier table's rows, shown until replaced)."""
    if old.empty:
        return new
    if new.empty:
        return old
    have = pd.MultiIndex.from_frame(new[list(keys)])
    extra = old[~pd.MultiIndex.from_frame(old[list(keys)]).isin(have)]
    return pd.concat([new, extra], ignore_index=True) if len(extra) else new


def sample_columns() -> Sequence[str]:
    """The per-sample columns, in order."""
    return ["backbone", "task", "transfer", "probe", "norm", "eps", "sample", "label", "pred", "correct", "rho",
            "delta_feature", "delta_e2e", "delta", "delta_head", "criterion_met", "criterion_met_feature_only",
            "criterion_met_head", "robust", "clean_loss", "adv_loss", "loss_bound", "loss_bound_lse",
            "feature_norm", "probe_C", "probe_radius"]


def gallery_panels(x: torch.Tensor, x_adv: torch.Tensor, eps: float, max_items: int = 8) -> dict[str, torch.Tensor]:
    """The three rows of an attack gallery as (K, H, W) grey images: ``clean`` x and ``attacked`` x' in [0, 1]
    (channels averaged) and ``perturbation`` (x' - x) / eps, in [-1, 1] for a linf ball (zeros at eps 0)."""
    a = x[:max_items].detach().cpu().float()
    b = x_adv[:max_items].detach().cpu().float()
    if a.ndim == 4:
        a, b = a.mean(dim=1), b.mean(dim=1)
    pert = (b - a) / eps if eps > 0 else torch.zeros_like(a)
    return {"clean": a, "attacked": b, "perturbation": pert}
