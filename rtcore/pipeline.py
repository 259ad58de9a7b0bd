"""The pipeline: probes, feature attacks, end-to-end attacks, bounds, as tidy DataFrames.

No printing, no plotting. The backbone is resolved once and passed down. Per task: the probe
(:mod:`rtcore.probes`), then per eps four attacks whose witnesses' features feed the bounds
(:mod:`rtcore.tables` with :mod:`rtcore.bounds`): the feature attack (head-independent: it
serves every head on the same inputs), the head-subspace feature attack (Delta_P), the
end-to-end attack and the cross-entropy attack. Every step is cached and verified
(:mod:`rtcore.steps`, :mod:`rtcore.cache`).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from .attacks import AttackSettings, resolve_settings
from .bounds import head_projector
from .cache import ResultCache
from .config import DEFAULT_PROBE_EPS, check_eps, check_norm, unique_eps
from .data import Task, load_task
from .models import Backbone, create_backbone
from .probes import LinearProbe, list_probes
from .sanity import SanityFlag, summary_text
from .steps import (
    GALLERY,
    attack_cached,
    feature_attack_cached,
    features,
    fit_probe,
    loss_attack_cached,
    radius_from_training_points,
    task_sanity,
)
from .tables import HeadInfo, summarise, task_rows
from .validation import check_count, check_seed, check_task_names


@dataclass(frozen=True)
class ProgressEvent:
    """A progress report: ``fraction`` of the whole evaluation in [0, 1] and the stage."""

    stage: str
    fraction: float
    task: str | None = None
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class Evaluation:
    """``summary``: one row per (backbone, task, norm, eps); ``samples``: one row per test point;
    ``gallery[(task, eps)]``: clean images and the feature-attack images of the first points;
    ``recomputed``: cache entries that failed verification and were recomputed;
    ``sanity[task]``: the sanity flags of the task's evaluation (:mod:`rtcore.sanity`), when asked for."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    gallery: dict[tuple[str, float], dict[str, torch.Tensor]] = field(default_factory=dict)
    recomputed: list[str] = field(default_factory=list)
    sanity: dict[str, list[SanityFlag]] = field(default_factory=dict)


def test_indices(n_test: int, n: int, seed: int) -> torch.Tensor:
    """A seeded random subset of ``n`` test points (sorted), all of them if ``n >= n_test``."""
    if n >= n_test:
        return torch.arange(n_test)
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def run_evaluation(
    backbone: str | nn.Module,
    tasks: Sequence[str | Task] | str | Task,
    eps: float | Sequence[float],
    norm: str = "linf",
    n: int = 500,
    *,
    attack: str | AttackSettings = "standard",
    seed: int = 0,
    probe: str = "logistic",
    probe_C: float | str = "auto",
    probe_eps: float | None = None,
    head_attack: bool = True,
    loss_attack: bool = True,
    head: LinearProbe | None = None,
    transfer: str = "lp",
    transfer_k: int = 1,
    cache_dir: str | None = None,
    use_cache: bool = True,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
    download: bool = False,
    sanity: bool = False,
    sanity_subset: int = 128,
) -> Evaluation:
    """Train probes, run the feature attacks and the end-to-end attacks, compute the bounds.

    ``n`` test points per task (a seeded subset). ``probe``: a kind of :func:`rtcore.probes.list_probes`
    (``logistic`` by default; ``robust`` trains against feature shifts of radius r = the median
    Delta(x; ``probe_eps``) of the feature attack on training points). Results are cached on
    disk and reused; a cache entry that fails verification is recomputed and listed in ``recomputed``.
    ``head``: a fitted head (e.g. from fine-tuning, see :mod:`rtcore.transfer`) used instead of fitting
    a probe (the ``probe`` column then reads ``given``). ``transfer``: ``lp`` (linear probing of the frozen
    backbone), or ``ft``, ``lp-ft``, ``ft-last-k`` (``transfer_k`` blocks): the backbone is adapted to each
    task by :func:`rtcore.transfer.adapt` (cached, resumable) and evaluated with its fine-tuned head;
    Delta is then measured on the adapted feature extractor. ``head_attack=False`` /
    ``loss_attack=False`` skip the head-subspace and cross-entropy attacks
    (then ``bound_head`` and ``adv_loss`` use the other attacks' witnesses only: still sound, looser).
    ``attack``: one of :data:`rtcore.STRENGTHS` (``"autoattack"``: AutoAttack end to end, the other
    attacks with the 'strong' settings) or :class:`AttackSettings`.
    ``sanity=True`` also runs :func:`rtcore.sanity.sanity_checks` per task (on ``sanity_subset``
    points for the subset checks): ``Evaluation.sanity[task]`` holds the flags and the summary
    gets a ``sanity_flags`` column ("ok" or the failed checks' names).
    """
    norm = check_norm(norm)
    eps_values = unique_eps(check_eps(eps, norm)[0])
    n = check_count(n, "n")
    seed = check_seed(seed)
    task_list = check_task_names(tasks)
    from .transfer.recipe import TRANSFER_METHODS  # lazily: rtcore.transfer's evaluation builds on this module

    if transfer not in TRANSFER_METHODS:
        raise ValueError(f"transfer={transfer!r} is unknown; use one of {list(TRANSFER_METHODS)}")
    if probe not in list_probes():
        raise ValueError(f"probe={probe!r} is unknown; use one of {list_probes()}")
    p_eps = DEFAULT_PROBE_EPS[norm] if probe_eps is None else check_eps(probe_eps, norm)[0][0]
    cfg = resolve_settings(attack)
    report = progress or (lambda ev: None)
    t0 = time.perf_counter()
    cache = ResultCache(cache_dir, enabled=use_cache)
    report(ProgressEvent("backbone", 0.0, message="loading the backbone"))
    g = create_backbone(backbone, device)
    frames, gallery = [], {}
    flags: dict[str, list[SanityFlag]] = {}
    for t_i, spec in enumerate(task_list):
        task = spec if isinstance(spec, Task) else load_task(spec, download=download, cache_dir=cache.root)
        base = t_i / len(task_list)

        span = 0.8 if sanity else 1.0  # the attacks' share of the task's progress; the sanity checks get the rest

        def at(stage: str, lo: float, hi: float, task_name: str = task.name) -> Callable[[float], None]:
            return lambda f: report(ProgressEvent(stage, base + (lo + (hi - lo) * f) / len(task_list), task_name))

        def sub(stage: str, lo: float, hi: float) -> Callable[[float], None]:
            return at(stage, span * lo, span * hi)

        sub("linear probe", 0.0, 0.05)(0.0)
        gt = g
        if head is not None:
            fitted, info = _given_head(head, task.num_classes), HeadInfo("given", float(getattr(head, "C_", "nan")), 0.0)
        elif transfer != "lp":
            from .transfer.adaptation import adapt

            adapted = adapt(g, task, transfer, k=transfer_k if transfer == "ft-last-k" else 1, probe=probe, seed=seed,
                            cache=cache, progress=sub("fine-tuning", 0.0, 0.05))
            gt, fitted = adapted.backbone, adapted.head
            info = HeadInfo("fine-tuned", float("nan"), 0.0, adapted.info.label)
        else:
            fitted, info = _fit_head(g, task, probe, probe_C, p_eps, norm, cfg, seed, cache,
                                     sub("linear probe", 0.0, 0.05))
        idx = test_indices(task.x_test.shape[0], n, seed)
        x, y = task.x_test[idx], task.y_test[idx]
        f0 = features(gt, x, cache)
        m = f0.shape[1]
        feat = feature_attack_cached(gt, x, m, eps_values, norm, cfg, seed, cache, sub("feature attack", 0.05, 0.35))
        e2e = attack_cached(gt, fitted, x, y, m, eps_values, norm, cfg, seed, cache, sub("end-to-end attack", 0.35, 0.6))
        witnesses = {e: {"feature": feat[e]["features_adv"], "e2e": e2e[e]["features_adv"]} for e in eps_values}
        if head_attack:
            on_head = feature_attack_cached(gt, x, m, eps_values, norm, cfg, seed, cache,
                                            sub("head-subspace attack", 0.6, 0.85),
                                            projector=head_projector(fitted.weight_), kind="head_attack")
            for e in eps_values:
                witnesses[e]["head"] = on_head[e]["features_adv"]
        if loss_attack:
            ce = loss_attack_cached(gt, fitted, x, y, m, eps_values, norm, cfg, seed, cache, sub("loss attack", 0.85, 1.0))
            for e in eps_values:
                witnesses[e]["ce"] = ce[e]["features_adv"]
        frames.append(task_rows(g.name, task, idx, norm, f0, fitted, info, witnesses))
        if sanity:
            flags[task.name] = task_sanity(gt, fitted, x, y, eps_values, norm, cfg, seed, frames[-1], sanity_subset,
                                           at("sanity checks", span, 1.0))
        for e in eps_values:
            gallery[(task.name, e)] = {"x": x[:GALLERY], "x_adv": feat[e]["x_adv_gallery"], "label": y[:GALLERY]}
    samples = pd.concat(frames, ignore_index=True)
    summary = summarise(samples)
    summary["attack"] = repr(cfg.key()) if isinstance(attack, AttackSettings) else attack
    summary["head_attack"], summary["loss_attack"] = bool(head_attack), bool(loss_attack)
    summary["seed"] = seed
    if sanity:
        summary["sanity_flags"] = summary["task"].map({t: summary_text(f) for t, f in flags.items()})
    summary["seconds"] = time.perf_counter() - t0
    report(ProgressEvent("done", 1.0))
    return Evaluation(summary=summary, samples=samples, gallery=gallery,
                      recomputed=[f"{r.path}: {r.reason}" for r in cache.rejected], sanity=flags)


def _fit_head(g: Backbone, task: Task, probe: str, probe_C: float | str, probe_eps: float, norm: str,
              cfg: AttackSettings, seed: int, cache: ResultCache,
              progress: Callable[[float], None]) -> tuple[LinearProbe, HeadInfo]:
    """The probe of kind ``probe`` (the robust one with radius = median training-point Delta at ``probe_eps``)."""
    params: dict[str, object] = {} if probe == "logistic-std" else {"C": probe_C}
    radius = 0.0
    if probe == "robust":
        radius = radius_from_training_points(g, task, probe_eps, norm, cfg, seed, cache, progress)
        params["radius"] = radius
    fitted = fit_probe(g, task, cache, probe, **params)
    return fitted, HeadInfo(probe, float(getattr(fitted, "C_", float("nan"))), radius)


def _given_head(head: LinearProbe, num_classes: int) -> LinearProbe:
    if not hasattr(head, "weight_") or head.weight_.shape[0] != num_classes:
        shape = tuple(head.weight_.shape) if hasattr(head, "weight_") else "not fitted"
        raise ValueError(f"head= must be a fitted probe with {num_classes} classes for this task, got weight {shape}")
    return head


def evaluate(
    backbone: str | nn.Module,
    tasks: Sequence[str | Task] | str | Task,
    eps: float | Sequence[float],
    norm: str = "linf",
    n: int = 500,
    **kwargs: object,
) -> pd.DataFrame:
    """The summary table of :func:`run_evaluation`: one row per (backbone, task, probe, norm, eps) with
    ``clean_acc, robust_acc, bound, bound_head, bound_mean_delta, mean_delta, clean_loss, adv_loss,
    loss_bound_lse, loss_bound`` and more. ``bound <= bound_head <= robust_acc <= clean_acc`` on every row."""
    return run_evaluation(backbone, tasks, eps, norm, n, **kwargs).summary  # type: ignore[arg-type]


def _exact(e: float) -> str:
    """The shortest text that reads back as the same float (``0``, ``0.05``, ``0.00392156862745098``)."""
    text = repr(float(e))
    return text[:-2] if text.endswith(".0") else text


def cli_command(backbone: str, tasks: Sequence[str], eps: Sequence[float], norm: str, n: int,
                attack: str = "standard", seed: int = 0, out: str = "results.csv", weights: str | None = None,
                probe: str = "logistic", probe_eps: float | None = None, samples_out: str | None = None,
                transfer: str = "lp", transfer_k: int = 1) -> str:
    """The exact command line that reproduces an evaluation (``weights``: a checkpoint file)."""
    parts = ["python", "-m", "rtcore", "evaluate", "--backbone", backbone, *(["--weights", weights] if weights else []),
             "--tasks", *tasks,
             "--eps", *[_exact(e) for e in eps], "--norm", norm, "--n", str(n), "--attack", attack,
             "--seed", str(seed), "--probe", probe,
             *(["--probe-eps", _exact(probe_eps)] if probe_eps is not None else []),
             *(["--transfer", transfer] if transfer != "lp" else []),
             *(["--transfer-k", str(transfer_k)] if transfer == "ft-last-k" else []), "--out", out,
             *(["--samples-out", samples_out] if samples_out else [])]
    return shlex.join(parts)
