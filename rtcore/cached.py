"""The cached computations of the pipeline: features, probes, and the four attacks, each stored per eps.

Every step is keyed by everything that changes its result (backbone fingerprint, input digest,
head digest, eps, norm, settings, seed, code version) and every hit is verified against a
schema before use (see :mod:`rtcore.cache`). Every eps is attacked on its own, so an entry is
the same whichever eps were asked for together (the carry-over of smaller-eps witnesses that
makes results monotone in eps is applied when the tables are built, :func:`rtcore.tables.carry_witnesses`).
Each attack stores the *features* of its witnesses, ``g(x')``, so that the
bounds can be recomputed for any quantity without running g again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pandas as pd
import torch

from ._io import tensor_digest
from .attacks import AttackSetup, EndToEndAttack, FeatureAttack, LossAttack, ProgressFn
from .cache import ResultCache
from .data import Task
from .models import Backbone
from .numerics import numerics_tag, positional_batch, with_fixed_threads
from .probes import LinearProbe, ProbedModel, create_probe
from .sanity import SanityFlag, sanity_checks
from .validation import check_features

log = logging.getLogger(__name__)

GALLERY = 8
RADIUS_POINTS = 256  # training points whose median Delta is the robust probe's radius

Entries = dict[float, dict[str, torch.Tensor]]


#: rows of a cached feature table recomputed on the current model before the table is used
SPOT_ROWS = 2
_SALTS: dict[str, str] = {}


def backbone_key(g: Backbone) -> str:
    """The backbone's part of every cache key: its fingerprint, salted once its output was seen to differ
    from the features cached under that fingerprint (then nothing computed before is used again)."""
    fp = g.fingerprint()
    salt = _SALTS.get(fp)
    return f"{fp if salt is None else f'{fp}+{salt}'}@{numerics_tag(g.device, positional_batch(g))}"


def _forward(g: Backbone, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([g(x[i:i + batch_size].to(g.device)).cpu() for i in range(0, x.shape[0], batch_size)])


def _agrees(g: Backbone, x: torch.Tensor, cached: torch.Tensor) -> bool:
    """Whether the current model reproduces the first cached rows (shape, dtype and values)."""
    k = min(SPOT_ROWS, x.shape[0])
    fresh = _forward(g, x[:k], k)
    if fresh.shape[1:] != cached.shape[1:] or fresh.dtype != cached.dtype:
        return False
    scale = float(fresh.abs().max()) if fresh.numel() else 0.0
    return bool(torch.allclose(fresh, cached[:k], rtol=1e-4, atol=1e-5 * max(1.0, scale)))


def _feature_key(g: Backbone, x: torch.Tensor, cache: ResultCache) -> str:
    return cache.key("features", backbone=backbone_key(g), inputs=tensor_digest(x))


def _check_cached_features(g: Backbone, x: torch.Tensor, cache: ResultCache) -> torch.Tensor | None:
    """The features of ``x`` cached under the backbone's key, if the current model reproduces their first rows.
    If it does not, the backbone's key is salted (:func:`backbone_key`): nothing cached for the old model is
    used again, in this process, and None is returned."""
    hit = cache.load(_feature_key(g, x, cache), {"features": (x.shape[0], None)})
    if hit is None:
        return None
    if _agrees(g, x, hit["features"]):
        return hit["features"]
    log.warning("backbone %r computes other features than those cached under its fingerprint; "
                "every result of it is recomputed", g.name)
    _SALTS[g.fingerprint()] = tensor_digest(_forward(g, x[:SPOT_ROWS], SPOT_ROWS))[:16]
    return None


@with_fixed_threads
def features(g: Backbone, x: torch.Tensor, cache: ResultCache, batch_size: int = 256,
             progress: ProgressFn | None = None) -> torch.Tensor:
    """``g(x)`` (N, m) on the CPU, cached by (backbone fingerprint, input digest).

    A cached table is used only if the current model reproduces its first rows: a model whose code
    changed in a way its fingerprint misses gets a salted key (:func:`backbone_key`), so every
    result computed for the old model is recomputed, never served."""
    cached = _check_cached_features(g, x, cache)
    if cached is not None:
        return cached
    if progress is not None:
        progress(0.0)
    f = _forward(g, x, batch_size)
    check_features(f, f"features of backbone {g.name!r}")
    cache.save(_feature_key(g, x, cache), {"features": f})
    if progress is not None:
        progress(1.0)
    return f


def per_eps_cached(kind: str, cache: ResultCache, eps_values: Sequence[float], key_parts: dict[str, object],
                   schema: dict[str, tuple[int | str | None, ...]],
                   compute: Callable[[float, ProgressFn], dict[str, torch.Tensor]], progress: ProgressFn,
                   missing_ok: bool = False) -> Entries:
    """Look up each eps; compute each missing one on its own (``compute(e, progress)``: the entry then
    never depends on which eps were asked for together, nor on the batches they would have shared);
    store each as soon as it is computed. ``missing_ok``: only look up (missing eps are left out)."""
    keys = {e: cache.key(kind, eps=e, **key_parts) for e in eps_values}
    out = {e: hit for e in eps_values if (hit := cache.load(keys[e], schema)) is not None}
    missing = [] if missing_ok else [e for e in eps_values if e not in out]
    for i, e in enumerate(missing):
        entry = compute(e, lambda f, i=i: progress((i + f) / len(missing)))
        cache.save(keys[e], entry)
        out[e] = entry
    return out


def feature_attack_cached(g: Backbone, x: torch.Tensor, m: int, eps_values: Sequence[float], setup: AttackSetup,
                          cache: ResultCache, progress: ProgressFn,
                          projector: torch.Tensor | None = None, kind: str = "feature_attack",
                          missing_ok: bool = False) -> Entries:
    """Per eps: ``features_adv`` (N, m) of the feature attack (projected with ``projector`` if given)
    and the first images for the gallery. Without a projector it serves every head on ``x``."""
    parts: dict[str, object] = {"backbone": backbone_key(g), "inputs": tensor_digest(x), **setup.key()}
    if projector is not None:
        parts["projector"] = tensor_digest(projector)
    gal = min(GALLERY, x.shape[0])
    schema = {"features_adv": (x.shape[0], m), "x_adv_gallery": (gal, *x.shape[1:])}

    def compute(e: float, report: ProgressFn) -> dict[str, torch.Tensor]:
        res = FeatureAttack(g, setup, None if projector is None else projector.float())(x, None, [e], report)
        return {"features_adv": res.features_adv[0], "x_adv_gallery": res.x_adv[0, :gal]}

    return per_eps_cached(kind, cache, eps_values, parts, schema, compute, progress, missing_ok)


def _head_parts(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor,
                setup: AttackSetup) -> dict[str, object]:
    return {"backbone": backbone_key(g), "inputs": tensor_digest(x, y),
            "head": tensor_digest(probe.weight_, probe.bias_), **setup.key()}


def attack_cached(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, m: int,
                  eps_values: Sequence[float], setup: AttackSetup, cache: ResultCache,
                  progress: ProgressFn, missing_ok: bool = False) -> Entries:
    """Per eps: the features ``g(x'_e2e)`` of the end-to-end attack's witnesses on ``probe(g(.))``.

    With ``cfg.autoattack`` the search is AutoAttack, stored under its own cache kind."""
    model = ProbedModel(g, probe.as_module().to(g.device))

    def compute(e: float, report: ProgressFn) -> dict[str, torch.Tensor]:
        res = EndToEndAttack(model, setup)(x, y, [e], report)
        return {"features_adv": features(g, res.x_adv[0], ResultCache(enabled=False))}

    return per_eps_cached("autoattack" if setup.settings.autoattack else "attack", cache, eps_values,
                          _head_parts(g, probe, x, y, setup), {"features_adv": (x.shape[0], m)}, compute,
                          progress, missing_ok)


def loss_attack_cached(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, m: int,
                       eps_values: Sequence[float], setup: AttackSetup, cache: ResultCache,
                       progress: ProgressFn, missing_ok: bool = False) -> Entries:
    """Per eps: the features of the cross-entropy attack's witnesses (no early stop)."""
    model = ProbedModel(g, probe.as_module().to(g.device))

    def compute(e: float, report: ProgressFn) -> dict[str, torch.Tensor]:
        res = LossAttack(model, setup)(x, y, [e], report)
        return {"features_adv": features(g, res.x_adv[0], ResultCache(enabled=False))}

    return per_eps_cached("ce_attack", cache, eps_values, _head_parts(g, probe, x, y, setup),
                          {"features_adv": (x.shape[0], m)}, compute, progress, missing_ok)


def radius_from_training_points(g: Backbone, task: Task, eps: float, setup: AttackSetup, cache: ResultCache,
                                progress: ProgressFn) -> float:
    """The robust probe's radius: the median Delta(x; eps) of the feature attack on training points
    (a seeded subset of at most :data:`RADIUS_POINTS`; test points are never used)."""
    n = task.x_train.shape[0]
    idx = torch.arange(n) if n <= RADIUS_POINTS else \
        torch.randperm(n, generator=torch.Generator().manual_seed(setup.seed))[:RADIUS_POINTS].sort().values
    x = task.x_train[idx]
    f0 = features(g, x, cache)
    entry = feature_attack_cached(g, x, f0.shape[1], [eps], setup, cache, progress)[eps]
    return float((entry["features_adv"].double() - f0.double()).norm(dim=1).median())


def fit_probe(g: Backbone, task: Task, cache: ResultCache, kind: str = "logistic", *,
              progress: ProgressFn | None = None, **params: object) -> LinearProbe:
    """The task's probe of ``kind`` on frozen train features (cached; ``params`` go to the probe).
    ``progress`` is called only when something is computed (features or the fit)."""
    probe = create_probe(kind, num_classes=task.num_classes, **params)
    k = task.num_classes
    schema = {"weight": (k, None), "bias": (k,), "C": (1,)}

    def key() -> str:
        return cache.key("probe", backbone=backbone_key(g), inputs=tensor_digest(task.x_train, task.y_train),
                         params=probe.get_params())

    hit = cache.load(key(), schema)
    if hit is not None:  # a stored probe is used only for a model that still computes the features it was fitted on
        before = backbone_key(g)
        _check_cached_features(g, task.x_train, cache)
        if backbone_key(g) != before:
            hit = cache.load(key(), schema)
    if hit is not None:
        fitted = LinearProbe.from_weights(hit["weight"], hit["bias"])
        fitted.C_ = float(hit["C"][0])
        return fitted
    train = features(g, task.x_train, cache, progress=None if progress is None else (lambda f: progress(0.5 * f)))
    if progress is not None:
        progress(0.5)
    probe.fit(train, task.y_train)
    cache.save(key(), {"weight": probe.weight_, "bias": probe.bias_, "C": torch.tensor([probe.C_], dtype=torch.float64)})
    if progress is not None:
        progress(1.0)
    return probe


def task_sanity(g: Backbone, probe: LinearProbe, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float],
                setup: AttackSetup, rows: pd.DataFrame, n_subset: int, progress: ProgressFn) -> list[SanityFlag]:
    """The sanity flags of one task's evaluation (:func:`rtcore.sanity.sanity_checks`) on
    ``probe(g(.))``, from the per-sample ``robust`` column of its rows (robust against every
    attack's witness). Not cached: they are asked for rarely, and always about a run that is."""
    robust = {e: torch.tensor(rows.loc[rows["eps"] == e, "robust"].to_numpy()) for e in eps_values}
    model = ProbedModel(g, probe.as_module().to(g.device))
    return sanity_checks(model, x, y, eps_values, setup.norm, robust, setup.settings, setup.seed, n_subset,
                         progress=progress)
