"""Evaluate adapted models with the cached attack steps, and compare the transfer methods.

:func:`evaluate_adapted` runs the spec of an adapted backbone with its own head (``head=``): the
same cached attack steps and seeded test subset as any other evaluation.
:func:`compare_methods` adapts and evaluates each method and adds, per (method, eps):

* ``mean_delta_base``: mean Delta of the *base* backbone on the same points (before fine-tuning),
  and ``mean_relative_delta_base`` (Delta / ||g(x)||, comparable across feature scales);
* ``bound_pre``: ``mean 1[rho_method(x) > Delta_base(x)]``, the bound the method's margins would
  give if fine-tuning had not changed the representation's vulnerability. Ranking the methods by
  it is the prediction the pre-fine-tuning Delta makes; :func:`ordering_verdict` compares it with
  the measured ranking by robust accuracy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd

from ..attacks import AttackSettings, ProgressFn
from ..cache import ResultCache
from ..config import eps_key, eps_text
from ..data import Task
from ..models import Backbone
from ..models.ref import BackboneRef
from ..transfer.adaptation import Adapted, AdaptInfo, adapt
from ..transfer.recipe import TRANSFER_METHODS, FineTuneRecipe, check_method, method_label
from .evaluate import execute
from .results import Evaluation
from .progress import ProgressCallback, ProgressEvent
from .spec import EvalSpec


def comparison_sweep(backbone: BackboneRef, task: str, methods: Sequence[str], eps: Sequence[float], norm: str,
                     n: int | str, *, k: int = 1, attack: str = "fast", seed: int = 0,
                     recipe: FineTuneRecipe | None = None) -> dict[str, object]:
    """The sweep file (a spec with ``transfers`` as a list) that computes what :func:`compare_methods` does for
    these arguments: each method's rows of the comparison are the rows of its unit (``python -m rtcore sweep``
    reproduces a comparison the dashboard showed)."""
    table: dict[str, object] = {"backbones": [backbone.to_dict() if backbone.to_dict().keys() - {"backbone"}
                                              else backbone.name],
                                "tasks": [task], "eps": [eps_text(e) for e in eps], "norm": norm, "n": n,
                                "attack": attack, "seed": seed, "transfers": list(methods)}
    if "ft-last-k" in methods:
        table["transfer_k"] = int(k)
    rec = {key: v for key, v in asdict(recipe or FineTuneRecipe()).items()
           if key != "seed" and v != getattr(FineTuneRecipe(), key)}
    if rec and any(m != "lp" for m in methods):
        table["finetune"] = rec
    return table


def evaluate_adapted(adapted: Adapted, task: Task, eps: float | Sequence[float], norm: str = "linf", n: int = 500, *,
                     attack: str | AttackSettings = "fast", seed: int = 0, cache: ResultCache,
                     head_attack: bool = True, loss_attack: bool = True,
                     progress: ProgressFn | None = None) -> Evaluation:
    """Clean and robust accuracy, bound and Delta of ``adapted`` on ``n`` seeded test points of ``task``.

    The spec of the adapted backbone with its own head (``head=``), so the columns are the
    pipeline's (``probe`` reads ``given``), plus ``method`` and ``base_backbone``; every attack step
    is cached by the adapted backbone's fingerprint and the head's digest.
    """
    report = progress or (lambda f: None)
    t0 = time.perf_counter()
    given = ((task.name, task.digest, int(task.x_test.shape[0])),)
    spec = EvalSpec(backbone=BackboneRef.of_module(adapted.backbone), tasks=(task.name,), eps=eps, norm=norm, n=n,
                    attack=attack, seed=seed, head_attack=head_attack, loss_attack=loss_attack, given_tasks=given)
    ev = execute(spec, progress=lambda event: report(event.fraction), backbone=adapted.backbone,
                 tasks={task.name: task}, head=adapted.head, cache=cache)
    for df in (ev.samples, ev.summary):
        df.insert(0, "method", adapted.info.label)
        df.insert(1, "base_backbone", adapted.info.base)
    ev.summary["seconds"] = time.perf_counter() - t0
    report(1.0)
    return ev


@dataclass
class MethodComparison:
    """``summary``: one row per (method, eps) with the pipeline's columns plus ``mean_delta_base``,
    ``bound_pre``, ``weight_distance``, ``head_distance``, ``params_trained``, ``adapt_seconds``,
    ``adapt_cached``, ``eval_seconds``; ``samples``: per test point; ``infos``: per method label."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    infos: dict[str, AdaptInfo] = field(default_factory=dict)
    recomputed: list[str] = field(default_factory=list)


def compare_methods(g: Backbone, task: Task, eps: float | Sequence[float], norm: str = "linf", n: int = 500, *,
                    methods: Sequence[str] = TRANSFER_METHODS, k: int = 1, attack: str | AttackSettings = "fast",
                    probe: str = "logistic", seed: int = 0, cache: ResultCache, recipe: FineTuneRecipe | None = None,
                    head_attack: bool = True, loss_attack: bool = True,
                    progress: ProgressCallback | None = None) -> MethodComparison:
    """Adapt ``g`` to ``task`` by each of ``methods`` (``k`` for ``ft-last-k``) and evaluate each.

    The base backbone (``lp``) is always evaluated, since its Delta is the "before" of every
    fine-tuned method; its rows appear only if ``lp`` is among ``methods``. ``progress`` gets
    :class:`ProgressEvent` (a stage name and the fraction of the whole comparison done).
    """
    chosen = [check_method(mth) for mth in methods]
    if not chosen:
        raise ValueError(f"methods is empty; choose some of {list(TRANSFER_METHODS)}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"methods={list(methods)} repeats a method; give each once")
    order = ["lp", *[mth for mth in chosen if mth != "lp"]]
    report = progress or (lambda ev: None)
    share = 1.0 / len(order)
    summaries, samples, infos = [], [], {}
    for i, mth in enumerate(order):
        label = method_label(mth, k)
        lo = i * share
        split = 0.1 if mth == "lp" else 0.6

        def sub(stage: str, a: float, b: float, lo: float = lo) -> ProgressFn:
            return lambda f: report(ProgressEvent(stage, lo + share * (a + (b - a) * f)))

        t0 = time.perf_counter()
        adapted = adapt(g, task, mth, k=k if mth == "ft-last-k" else 1, probe=probe, seed=seed, cache=cache,
                        recipe=recipe, progress=sub(f"adapting: {label}", 0.0, split))
        adapt_wall = time.perf_counter() - t0
        ev = evaluate_adapted(adapted, task, eps, norm, n, attack=attack, seed=seed, cache=cache,
                              head_attack=head_attack, loss_attack=loss_attack,
                              progress=sub(f"attacking: {label}", split, 1.0))
        info = adapted.info
        s = ev.summary
        s["weight_distance"], s["head_distance"] = info.weight_distance, info.head_distance
        s["params_trained"], s["adapt_seconds"] = info.params_trained, info.seconds
        s["adapt_cached"], s["adapt_wall_seconds"], s["eval_seconds"] = info.from_cache, adapt_wall, s.pop("seconds")
        infos[label] = info
        summaries.append(s)
        samples.append(ev.samples)
    summary, per_sample = _add_base_columns(pd.concat(summaries, ignore_index=True),
                                            pd.concat(samples, ignore_index=True))
    keep = [method_label(mth, k) for mth in chosen]
    summary = summary[summary["method"].isin(keep)].reset_index(drop=True)
    per_sample = per_sample[per_sample["method"].isin(keep)].reset_index(drop=True)
    report(ProgressEvent("done", 1.0))
    return MethodComparison(summary, per_sample, {lbl: infos[lbl] for lbl in keep},
                            [f"{r.path}: {r.reason}" for r in cache.rejected])


def _add_base_columns(summary: pd.DataFrame, samples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``delta_base`` per sample (the lp rows' consistent Delta) and, per (method, eps),
    ``mean_delta_base``, ``mean_relative_delta_base`` (Delta / ||g(x)|| of the base: fine-tuning may
    rescale the features, so absolute Deltas of two backbones compare scales as well) and
    ``bound_pre`` = mean 1[rho > delta_base]."""
    base = samples[samples["method"] == "lp"][["eps", "sample", "delta", "feature_norm"]]
    base = base.assign(relative_delta_base=base["delta"] / base["feature_norm"].where(base["feature_norm"] > 0))
    base = base.rename(columns={"delta": "delta_base"}).drop(columns="feature_norm")
    samples = samples.merge(base, on=["eps", "sample"], how="left", validate="many_to_one")
    samples["criterion_met_pre"] = samples["rho"] > samples["delta_base"]
    agg = samples.groupby(["method", "eps"], sort=False).agg(
        mean_delta_base=("delta_base", "mean"), mean_relative_delta_base=("relative_delta_base", "mean"),
        bound_pre=("criterion_met_pre", "mean")).reset_index()
    return summary.merge(agg, on=["method", "eps"], how="left", validate="one_to_one"), samples


@dataclass(frozen=True)
class Verdict:
    """At one eps: the methods that keep most robustness (``best``, by robust accuracy), the ones the
    pre-fine-tuning Delta ranks first (``predicted_best``, by ``bound_pre``), and the Kendall tau-b of
    the two rankings over the methods (NaN when either ranking is all ties)."""

    eps: float
    best: tuple[str, ...]
    robust_acc: float
    predicted_best: tuple[str, ...]
    kendall_tau: float

    @property
    def agrees(self) -> bool:
        """The predicted best method is among the measured best."""
        return bool(set(self.best) & set(self.predicted_best))


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences (NaN when either has no untied pair)."""
    conc = disc = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + ties_a) * (conc + disc + ties_b))
    return (conc - disc) / denom if denom > 0 else math.nan


def ordering_verdict(summary: pd.DataFrame, eps: float, tol: float = 1e-9) -> Verdict:
    """Which method keeps most robustness at ``eps``, and whether ``bound_pre`` predicted the ordering."""
    rows = summary[(summary["eps"] - eps).abs() < 1e-9]
    if rows.empty:
        raise ValueError(f"eps={eps!r} is not in the summary; its eps values are {sorted(summary['eps'].unique())}")
    ra, pre = rows["robust_acc"].tolist(), rows["bound_pre"].tolist()
    labels = rows["method"].tolist()
    best = tuple(lbl for lbl, r in zip(labels, ra) if r >= max(ra) - tol)
    predicted = tuple(lbl for lbl, p in zip(labels, pre) if p >= max(pre) - tol)
    return Verdict(float(eps), best, float(max(ra)), predicted, kendall_tau_b(pre, ra))


def block_distances(comparison: MethodComparison) -> dict[str, dict[str, float]]:
    """Per method label, per block (forward order): the L2 distance of the fine-tuned weights from the pretrained."""
    return {label: {b: d for b, d in info.block_distance.items() if b != "total"}
            for label, info in comparison.infos.items()}


def movement_table(comparison: MethodComparison) -> pd.DataFrame:
    """Per method: ``weight_distance`` (all blocks), each block's distance (column ``block <name>``), the head's
    distance from its start (``head_distance``; ``head_init``: None for the probe), the parameters trained and
    frozen, the epochs and whether it was read from the cache (``cached``)."""
    rows = [{"method": label, "weight_distance": info.weight_distance,
             **{f"block {b}": d for b, d in info.block_distance.items() if b != "total"},
             "head_distance": info.head_distance, "head_init": info.head_init, "params_trained": info.params_trained,
             "params_frozen": info.params_frozen, "epochs": info.epochs, "cached": info.from_cache}
            for label, info in comparison.infos.items()]
    return pd.DataFrame(rows)


def method_table(comparison: MethodComparison, eps_values: Sequence[float]) -> pd.DataFrame:
    """One row per (backbone, task, method): clean accuracy, then robust accuracy, bound, mean Delta
    and the base backbone's mean Delta at each of ``eps_values`` (columns suffixed ``@<eps>``), then
    weight distance, parameters trained and the adaptation's seconds."""
    s = comparison.summary
    keys = {eps_key(e) for e in eps_values}
    missing = sorted(keys - set(s["eps"]))
    if missing:
        raise ValueError(f"eps {missing} are not in the comparison; its eps values are {sorted(s['eps'].unique())}")
    rows = []
    for (backbone, task, method), grp in s.groupby(["base_backbone", "task", "method"], sort=False):
        row: dict[str, object] = {"backbone": backbone, "task": task, "method": method,
                                  "clean_acc": float(grp["clean_acc"].iloc[0])}
        for e in eps_values:
            r = grp[grp["eps"] == eps_key(e)].iloc[0]
            for col in ("robust_acc", "bound", "bound_pre", "mean_delta", "mean_delta_base", "mean_relative_delta",
                        "mean_relative_delta_base"):
                row[f"{col}@{eps_key(e)}"] = float(r[col])
        first = grp.iloc[0]
        row.update(weight_distance=float(first["weight_distance"]), params_trained=int(first["params_trained"]),
                   adapt_seconds=float(first["adapt_seconds"]), adapt_cached=bool(first["adapt_cached"]))
        rows.append(row)
    return pd.DataFrame(rows)
