"""The cached steps of the pipeline: features, probes, and the four attacks, each stored per eps.

Every step is keyed by everything that changes its result (backbone fingerprint, input digest,
head digest, eps, norm, settings, seed, code version) and every hit is verified against a
schema before use (see :mod:`rtcore.cache`). Every eps is attacked on its own, so an entry is
the same whichever eps were asked for together (the carry-over of smaller-eps witnesses that
makes results monotone in eps is applied when the tables are built, :func:`rtcore.tables.carry_witnesses`).
Each attack stores the *features* of its witnesses, ``g(x')``, so that the
bounds can be recomputed for any quantity without running g again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from ._io import tensor_digest
from .attacks import AttackSettings, attack, feature_attack, loss_attack
from .cache import ResultCache
from .data import Task
from .models import Backbone
from .probes import LinearProbe, ProbedModel, create_probe
from .sanity import SanityFlag, sanity_checks
from .validation import check_features

GALLERY = 8
RADIUS_POINTS = 256  # training points whose median Delta is the robust probe's radius

Progress = Callable[[float], None]
Entries = dict[float, dict[str, torch.Tensor]]


def features(g: Backbone, x: torch.Tensor, cache: ResultCache, batch_size: int = 256) -> torch.Tensor:
    """``g(x)`` (N, m) on the CPU, cached by (backbone fingerprint, input digest)."""
    key = cache.key("features", backbone=g.fingerprint(), inputs=tensor_digest(x))
    hit = cache.load(key, {"features": (x.shape[0], None)})
    if hit is not None:
        return hit["features"]
    with torch.no_grad():
        f = torch.cat([g(x[i:i + batch_size].to(g.device)).cpu() for i in range(0, x.shape[0], batch_size)])
    check_features(f, f"features of backbone {g.name!r}")
    cache.save(key, {"features": f})
    return f


def per_eps_cached(kind: str, cache: ResultCache, eps_values: Sequence[float], key_parts: dict[str, object],
                   schema: dict[str, tuple[int | str | None, ...]],
                   compute: Callable[[float, Progress], dict[str, torch.Tensor]], progress: Progress) -> Entries:
    """Look up each eps; compute each missing one on its own (``compute(e, progress)``: the entry then
    never depends on which eps were asked for together, nor on the batches they would have shared);
    store each as soon as it is computed."""
    keys = {e: cache.key(kind, eps=e, **key_parts) for e in eps_values}
    out = {e: hit for e in eps_values if (hit := cache.load(keys[e], schema)) is not None}
    missing = [e for e in eps_values if e not in out]
    for i, e in enumerate(missing):
        entry = compute(e, lambda f, i=i: progress((i + f) / len(missing)))
        cache.save(keys[e], entry)
        out[e] = entry
    return out


def feature_attack_cached(g: Backbone, x: torch.Tensor, m: int, eps_values: Sequence[float], norm: str,
                          cfg: AttackSettings, seed: int, cache: ResultCache, progress: Progress,
                          projector: torch.Tensor | None = None, kind: str = "feature_attack") -> Entries:
    """Per eps: ``features_adv`` (N, m) of the feature attack (projected with ``projector`` if given)
    and the first images for the gallery. Without a projector it serves every head on ``x``."""
    parts: dict[str, object] = {"backbone": g.fingerprint(), "inputs": tensor_digest(x), "norm": norm,
                                "settings": cfg.key(), "seed": seed}
    if projector is not None:
        parts["projector"] = tensor_digest(projector)
    gal = min(GALLERY, x.shape[0])
    schema = {"features_adv": (x.shape[0], m), "x_adv_gallery": (gal, *x.shape[1:])}

    def compute(e: float, report: Progress) -> dict[str, torch.Tensor]:
        res = feature_attack(g, x, [e], norm=norm, settings=cfg, seed=seed, progress=report,
                             projector=None if projector is None else projector.float())
        return {"features_adv": res.features_adv[0], "x_adv_gallery": res.x_adv[0, :gal]}

    return per_eps_cached(kind, cache, eps_values, parts, schema, compute, progress)


def _head_parts(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, norm: str,
                cfg: AttackSettings, seed: int) -> dict[str, object]:
    return {"backbone": g.fingerprint(), "inputs": tensor_digest(x, y),
            "head": tensor_digest(probe.weight_, probe.bias_), "norm": norm, "settings": cfg.key(), "seed": seed}


def attack_cached(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, m: int,
                  eps_values: Sequence[float], norm: str, cfg: AttackSettings, seed: int, cache: ResultCache,
                  progress: Progress) -> Entries:
    """Per eps: the features ``g(x'_e2e)`` of the end-to-end attack's witnesses on ``probe(g(.))``.

    With ``cfg.autoattack`` the search is AutoAttack, stored under its own cache kind."""
    model = ProbedModel(g, probe.as_module().to(g.device))

    def compute(e: float, report: Progress) -> dict[str, torch.Tensor]:
        res = attack(model, x, y, [e], norm=norm, settings=cfg, seed=seed, progress=report)
        return {"features_adv": features(g, res.x_adv[0], ResultCache(enabled=False))}

    return per_eps_cached("autoattack" if cfg.autoattack else "attack", cache, eps_values,
                          _head_parts(g, probe, x, y, norm, cfg, seed), {"features_adv": (x.shape[0], m)}, compute,
                          progress)


def loss_attack_cached(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, m: int,
                       eps_values: Sequence[float], norm: str, cfg: AttackSettings, seed: int, cache: ResultCache,
                       progress: Progress) -> Entries:
    """Per eps: the features of the cross-entropy attack's witnesses (no early stop)."""
    model = ProbedModel(g, probe.as_module().to(g.device))

    def compute(e: float, report: Progress) -> dict[str, torch.Tensor]:
        res = loss_attack(model, x, y, [e], norm=norm, settings=cfg, seed=seed, progress=report)
        return {"features_adv": features(g, res.x_adv[0], ResultCache(enabled=False))}

    return per_eps_cached("ce_attack", cache, eps_values, _head_parts(g, probe, x, y, norm, cfg, seed),
                          {"features_adv": (x.shape[0], m)}, compute, progress)


def radius_from_training_points(g: Backbone, task: Task, eps: float, norm: str, cfg: AttackSettings, seed: int,
                                cache: ResultCache, progress: Progress) -> float:
    """The robust probe's radius: the median Delta(x; eps) of the feature attack on training points
    (a seeded subset of at most :data:`RADIUS_POINTS`; test points are never used)."""
    n = task.x_train.shape[0]
    idx = torch.arange(n) if n <= RADIUS_POINTS else \
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:RADIUS_POINTS].sort().values
    x = task.x_train[idx]
    f0 = features(g, x, cache)
    entry = feature_attack_cached(g, x, f0.shape[1], [eps], norm, cfg, seed, cache, progress)[eps]
    return float((entry["features_adv"].double() - f0.double()).norm(dim=1).median())


def fit_probe(g: Backbone, task: Task, cache: ResultCache, kind: str = "logistic",
              **params: object) -> LinearProbe:
    """The task's probe of ``kind`` on frozen train features (cached; ``params`` go to the probe)."""
    probe = create_probe(kind, num_classes=task.num_classes, **params)
    key = cache.key("probe", backbone=g.fingerprint(), inputs=tensor_digest(task.x_train, task.y_train),
                    params=probe.get_params())
    k = task.num_classes
    hit = cache.load(key, {"weight": (k, None), "bias": (k,), "C": (1,)})
    if hit is not None:
        fitted = LinearProbe.from_weights(hit["weight"], hit["bias"])
        fitted.C_ = float(hit["C"][0])
        return fitted
    probe.fit(features(g, task.x_train, cache), task.y_train)
    cache.save(key, {"weight": probe.weight_, "bias": probe.bias_, "C": torch.tensor([probe.C_], dtype=torch.float64)})
    return probe


def task_sanity(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float],
                norm: str, cfg: AttackSettings, seed: int, rows: pd.DataFrame, n_subset: int,
                progress: Progress) -> list[SanityFlag]:
    """The sanity flags of one task's evaluation (:func:`rtcore.sanity.sanity_checks`) on
    ``probe(g(.))``, from the per-sample ``robust`` column of its rows (robust against every
    attack's witness). Not cached: they are asked for rarely, and always about a run that is."""
    robust = {e: torch.tensor(rows.loc[rows["eps"] == e, "robust"].to_numpy()) for e in eps_values}
    model = ProbedModel(g, probe.as_module().to(g.device))
    return sanity_checks(model, x, y, eps_values, norm, robust, cfg, seed, n_subset, progress=progress)
