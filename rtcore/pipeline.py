"""The pipeline: probes, one feature attack per input set, end-to-end attacks, bounds.

Returns tidy pandas DataFrames (no printing, no plotting). The backbone is resolved once
and passed down. Every expensive step is cached on disk (see :mod:`rtcore.cache`) and
every hit is verified before use. The feature attack stores the adversarial *features*,
so any head on the same inputs reuses it; the bounds come from :mod:`rtcore.bounds`.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from ._io import tensor_digest
from .attacks import AttackSettings, attack, feature_attack, resolve_settings
from .bounds import bound_criterion, consistent_delta, cross_entropy, loss_bound, margins
from .cache import ResultCache
from .config import check_eps, check_norm, unique_eps
from .data import Task, load_task
from .models import Backbone, create_backbone
from .probes import LinearProbe, ProbedModel
from .validation import check_count, check_features, check_seed, check_task_names

GALLERY = 8
BOUND_KIND = "attack estimate"  # Delta from an attack: the bound is a prediction, not a certificate


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
    ``recomputed``: cache entries that failed verification and were recomputed."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    gallery: dict[tuple[str, float], dict[str, torch.Tensor]] = field(default_factory=dict)
    recomputed: list[str] = field(default_factory=list)


def features(g: Backbone, x: torch.Tensor, cache: ResultCache, batch_size: int = 256) -> torch.Tensor:
    """``g(x)`` (N, m) on the CPU, cached by (backbone fingerprint, input digest)."""
    key = cache.key("features", backbone=g.fingerprint(), inputs=tensor_digest(x))
    hit = cache.load(key, {"features": (x.shape[0], None)})
    if hit is not None:
        return hit["features"]
    with torch.no_grad():
        f = torch.cat([g(x[i:i + batch_size].to(g.device)).cpu() for i in range(0, x.shape[0], batch_size)])
    check_features(f, f"features of backbone {g.name!r}")
    if f.shape[0] != x.shape[0]:
        raise ValueError(f"backbone {g.name!r} returned {f.shape[0]} feature vectors for {x.shape[0]} images")
    cache.save(key, {"features": f})
    return f


def fit_probe(g: Backbone, task: Task, cache: ResultCache, C: float = 1.0) -> LinearProbe:
    """The task's linear probe on frozen train features (cached)."""
    probe = LinearProbe(C=C, num_classes=task.num_classes)
    key = cache.key("probe", backbone=g.fingerprint(), inputs=tensor_digest(task.x_train, task.y_train),
                    params=probe.get_params())
    hit = cache.load(key, {"weight": (task.num_classes, None), "bias": (task.num_classes,)})
    if hit is not None:
        return LinearProbe.from_weights(hit["weight"], hit["bias"])
    probe.fit(features(g, task.x_train, cache), task.y_train)
    cache.save(key, {"weight": probe.weight_, "bias": probe.bias_})
    return probe


def test_indices(n_test: int, n: int, seed: int) -> torch.Tensor:
    """A seeded random subset of ``n`` test points (sorted), all of them if ``n >= n_test``."""
    if n >= n_test:
        return torch.arange(n_test)
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _per_eps_cached(
    kind: str, cache: ResultCache, eps_values: Sequence[float], key_parts: dict[str, object],
    schema: dict[str, tuple[int | str | None, ...]],
    compute: Callable[[list[float]], list[dict[str, torch.Tensor]]],
) -> dict[float, dict[str, torch.Tensor]]:
    """Look up each eps; compute the missing ones together in one sweep; store each."""
    keys = {e: cache.key(kind, eps=e, **key_parts) for e in eps_values}
    out = {e: hit for e in eps_values if (hit := cache.load(keys[e], schema)) is not None}
    missing = [e for e in eps_values if e not in out]
    if missing:
        for e, entry in zip(missing, compute(missing)):
            cache.save(keys[e], entry)
            out[e] = entry
    return out


def feature_attack_cached(g: Backbone, x: torch.Tensor, m: int, eps_values: Sequence[float], norm: str,
                          cfg: AttackSettings, seed: int, cache: ResultCache,
                          progress: Callable[[float], None]) -> dict[float, dict[str, torch.Tensor]]:
    """Per eps: ``features_adv`` (N, m) of the feature attack and the first images for the gallery."""
    parts = {"backbone": g.fingerprint(), "inputs": tensor_digest(x), "norm": norm, "settings": cfg.key(), "seed": seed}
    gal = min(GALLERY, x.shape[0])
    schema = {"features_adv": (x.shape[0], m), "x_adv_gallery": (gal, *x.shape[1:])}

    def compute(eps_list: list[float]) -> list[dict[str, torch.Tensor]]:
        res = feature_attack(g, x, eps_list, norm=norm, settings=cfg, seed=seed, progress=progress)
        return [{"features_adv": res.features_adv[i], "x_adv_gallery": res.x_adv[i, :gal]}
                for i in range(len(eps_list))]

    return _per_eps_cached("feature_attack", cache, eps_values, parts, schema, compute)


def attack_cached(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, m: int, eps_values: Sequence[float],
                  norm: str, cfg: AttackSettings, seed: int, cache: ResultCache,
                  progress: Callable[[float], None]) -> dict[float, dict[str, torch.Tensor]]:
    """Per eps: the features ``g(x'_e2e)`` of the end-to-end attack's witnesses on ``probe(g(.))``."""
    parts = {"backbone": g.fingerprint(), "inputs": tensor_digest(x, y), "head": tensor_digest(probe.weight_, probe.bias_),
             "norm": norm, "settings": cfg.key(), "seed": seed}
    model = ProbedModel(g, probe.as_module().to(g.device))

    def compute(eps_list: list[float]) -> list[dict[str, torch.Tensor]]:
        res = attack(model, x, y, eps_list, norm=norm, settings=cfg, seed=seed, progress=progress)
        return [{"features_adv": features(g, res.x_adv[i], ResultCache(enabled=False))} for i in range(len(eps_list))]

    return _per_eps_cached("attack", cache, eps_values, parts, {"features_adv": (x.shape[0], m)}, compute)


def task_rows(backbone_name: str, task: Task, idx: torch.Tensor, eps_values: Sequence[float], norm: str,
              f0: torch.Tensor, probe: LinearProbe, feat: dict[float, dict[str, torch.Tensor]],
              e2e: dict[float, dict[str, torch.Tensor]]) -> pd.DataFrame:
    """Per-sample rows for one task, computed in float64 from stored features with :mod:`rtcore.bounds`."""
    y = task.y_test[idx]
    w, b = probe.weight_, probe.bias_

    def head(f: torch.Tensor) -> torch.Tensor:
        return f.double() @ w.double().T + b.double()

    z0 = head(f0)
    clean_loss = cross_entropy(z0, y)
    correct = z0.argmax(1) == y
    rho = margins(f0, y, w, b)
    fnorm = f0.double().norm(dim=1)
    frames = []
    for e in eps_values:
        fa_feat, fa_e2e = feat[e]["features_adv"], e2e[e]["features_adv"]
        d_feat = (fa_feat.double() - f0.double()).norm(dim=1)
        d_e2e = (fa_e2e.double() - f0.double()).norm(dim=1)
        delta = consistent_delta(d_feat, d_e2e)  # the larger shift wins
        robust = correct & (head(fa_e2e).argmax(1) == y) & (head(fa_feat).argmax(1) == y)
        adv_loss = torch.stack([clean_loss, cross_entropy(head(fa_e2e), y), cross_entropy(head(fa_feat), y)]).amax(0)
        frames.append(pd.DataFrame({
            "backbone": backbone_name, "task": task.name, "norm": norm, "eps": e,
            "sample": idx.numpy(), "label": y.numpy(), "pred": z0.argmax(1).numpy(), "correct": correct.numpy(),
            "rho": rho.numpy(), "delta_feature": d_feat.numpy(), "delta_e2e": d_e2e.numpy(), "delta": delta.numpy(),
            "criterion_met": bound_criterion(f0, y, w, b, delta).numpy(),
            "criterion_met_feature_only": bound_criterion(f0, y, w, b, d_feat).numpy(),
            "robust": robust.numpy(), "clean_loss": clean_loss.numpy(), "adv_loss": adv_loss.numpy(),
            "loss_bound": loss_bound(f0, y, w, b, delta).numpy(), "feature_norm": fnorm.numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


def summarise(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, task, norm, eps) from the per-sample table."""
    g = samples.groupby(["backbone", "task", "norm", "eps"], sort=False)
    rel = samples["delta"] / samples["feature_norm"].where(samples["feature_norm"] > 0)
    out = pd.DataFrame({
        "n": g.size(),
        "clean_acc": g["correct"].mean(),
        "robust_acc": g["robust"].mean(),
        "bound": g["criterion_met"].mean(),
        "bound_feature_only": g["criterion_met_feature_only"].mean(),
        "mean_delta": g["delta"].mean(),
        "median_delta": g["delta"].median(),
        "clean_loss": g["clean_loss"].mean(),
        "adv_loss": g["adv_loss"].mean(),
        "loss_bound": g["loss_bound"].mean(),
        "mean_delta_feature": g["delta_feature"].mean(),
        "mean_relative_delta": rel.groupby([samples[c] for c in ["backbone", "task", "norm", "eps"]], sort=False).mean(),
    }).reset_index()
    out["bound_kind"] = BOUND_KIND
    return out


def run_evaluation(
    backbone: str | nn.Module,
    tasks: Sequence[str | Task] | str | Task,
    eps: float | Sequence[float],
    norm: str = "linf",
    n: int = 500,
    *,
    attack: str | AttackSettings = "standard",
    seed: int = 0,
    probe_C: float = 1.0,
    cache_dir: str | None = None,
    use_cache: bool = True,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
    download: bool = False,
) -> Evaluation:
    """Train probes, run the feature attack and the end-to-end attacks, compute the bounds.

    ``n`` test points per task (a seeded subset). Results are cached on disk and reused;
    a cache entry that fails verification is recomputed and listed in ``recomputed``.
    """
    norm = check_norm(norm)
    eps_values = unique_eps(check_eps(eps)[0])
    n = check_count(n, "n")
    seed = check_seed(seed)
    task_list = check_task_names(tasks)
    cfg = resolve_settings(attack)
    report = progress or (lambda ev: None)
    t0 = time.perf_counter()
    cache = ResultCache(cache_dir, enabled=use_cache)
    report(ProgressEvent("backbone", 0.0, message="loading the backbone"))
    g = create_backbone(backbone, device)
    frames, gallery = [], {}
    for t_i, spec in enumerate(task_list):
        task = spec if isinstance(spec, Task) else load_task(spec, download=download, cache_dir=cache.root)
        base = t_i / len(task_list)

        def sub(stage: str, lo: float, hi: float, task_name: str = task.name) -> Callable[[float], None]:
            return lambda f: report(ProgressEvent(stage, base + (lo + (hi - lo) * f) / len(task_list), task_name))

        sub("linear probe", 0.0, 0.1)(0.0)
        probe = fit_probe(g, task, cache, probe_C)
        idx = test_indices(task.x_test.shape[0], n, seed)
        x, y = task.x_test[idx], task.y_test[idx]
        f0 = features(g, x, cache)
        m = f0.shape[1]
        feat = feature_attack_cached(g, x, m, eps_values, norm, cfg, seed, cache, sub("feature attack", 0.1, 0.5))
        e2e = attack_cached(g, probe, x, y, m, eps_values, norm, cfg, seed, cache, sub("end-to-end attack", 0.5, 1.0))
        frames.append(task_rows(g.name, task, idx, eps_values, norm, f0, probe, feat, e2e))
        for e in eps_values:
            gallery[(task.name, e)] = {"x": x[:GALLERY], "x_adv": feat[e]["x_adv_gallery"], "label": y[:GALLERY]}
    samples = pd.concat(frames, ignore_index=True)
    summary = summarise(samples)
    summary["attack"] = repr(cfg.key()) if isinstance(attack, AttackSettings) else attack
    summary["seed"] = seed
    summary["seconds"] = time.perf_counter() - t0
    report(ProgressEvent("done", 1.0))
    return Evaluation(summary=summary, samples=samples, gallery=gallery,
                      recomputed=[f"{r.path}: {r.reason}" for r in cache.rejected])


def evaluate(
    backbone: str | nn.Module,
    tasks: Sequence[str | Task] | str | Task,
    eps: float | Sequence[float],
    norm: str = "linf",
    n: int = 500,
    **kwargs: object,
) -> pd.DataFrame:
    """The summary table of :func:`run_evaluation`: one row per (backbone, task, norm, eps) with
    ``clean_acc, robust_acc, bound, bound_feature_only, mean_delta, median_delta, clean_loss,
    adv_loss, loss_bound`` and more. ``bound <= robust_acc <= clean_acc`` on every row."""
    return run_evaluation(backbone, tasks, eps, norm, n, **kwargs).summary  # type: ignore[arg-type]


def _exact(e: float) -> str:
    """The shortest text that reads back as the same float (``0``, ``0.05``, ``0.00392156862745098``)."""
    text = repr(float(e))
    return text[:-2] if text.endswith(".0") else text


def cli_command(backbone: str, tasks: Sequence[str], eps: Sequence[float], norm: str, n: int,
                attack: str = "standard", seed: int = 0, out: str = "results.csv", weights: str | None = None) -> str:
    """The exact command line that reproduces an evaluation (``weights``: a checkpoint file)."""
    parts = ["python", "-m", "rtcore", "evaluate", "--backbone", backbone, *(["--weights", weights] if weights else []),
             "--tasks", *tasks,
             "--eps", *[_exact(e) for e in eps], "--norm", norm, "--n", str(n), "--attack", attack,
             "--seed", str(seed), "--out", out]
    return shlex.join(parts)
