"""The feature attack: ``Delta(x; eps) = sup ||g(x') - g(x)||_2`` estimated from below."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..config import check_eps, check_norm
from ..validation import check_eval_mode, check_features, check_images
from .engine import (
    batched,
    check_inside,
    expand_eps,
    model_device,
    monotone,
    pgd,
    power_start,
    random_start,
    row_noise,
    search_model,
)
from .settings import AttackSettings, resolve_settings

ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class FeatureAttackResult:
    """``delta[e, i] = ||features_adv[e, i] - clean_features[i]||_2`` with ``features_adv = g(x_adv)``
    (leading E axis only for a list of eps). The adversarial features are returned so that a
    caller never runs g on ``x_adv`` again."""

    eps: float | tuple[float, ...]
    norm: str
    delta: torch.Tensor
    x_adv: torch.Tensor
    clean_features: torch.Tensor
    settings: AttackSettings
    features_adv: torch.Tensor


def feature_attack(
    backbone: nn.Module | str,
    x: torch.Tensor,
    eps: float | Sequence[float],
    *,
    norm: str = "linf",
    steps: int | None = None,
    restarts: int | None = None,
    seed: int = 0,
    settings: str | AttackSettings | None = None,
    progress: ProgressFn | None = None,
    projector: torch.Tensor | None = None,
) -> FeatureAttackResult:
    """Maximise ``||g(x') - g(x)||_2`` over ``x'`` in ``B_p(x, eps) ∩ [0,1]^d``.

    Returns the best value per sample over all iterates and restarts (worst case per
    sample, never an average). Delta is a lower estimate of the supremum.

    ``projector``: an orthogonal projection P (m, m); then the attack maximises the projected
    shift ``||P (g(x') - g(x))||_2`` and ``delta`` reports it (the head-subspace shift Delta_P
    when P projects onto the span of a head's weight differences, see
    :func:`rtcore.bounds.head_projector`).
    """
    from ..models import create_backbone

    g = create_backbone(backbone) if isinstance(backbone, str) else backbone
    check_norm(norm)
    eps_values, scalar = check_eps(eps, norm)
    check_images(x)
    check_eval_mode(g, "backbone")
    cfg = resolve_settings(settings, steps=steps, feature_restarts=restarts)
    device = model_device(g, x)
    x = x.to(device=device, dtype=torch.float32)
    n, n_eps = x.shape[0], len(eps_values)
    f0 = check_features(batched(g, x, cfg.batch_size), "backbone features")
    P = _check_projector(projector, f0.shape[1], device)
    gs = search_model(g, x, cfg.fuse)  # the iterations run on gs; Delta is recomputed on g below
    f0_search = f0 if gs is g else batched(gs, x, cfg.batch_size)
    eps_rows = expand_eps(eps_values, n, device)
    x_rows = x.repeat(n_eps, 1, 1, 1)
    best_x = x_rows.clone()
    best = torch.zeros(n * n_eps, device=device)
    live = torch.nonzero(eps_rows > 0).flatten()
    total = max(live.numel() * cfg.feature_restarts, 1)
    done = 0
    for r in range(cfg.feature_restarts):
        for lo in range(0, live.numel(), cfg.batch_size):
            idx = live[lo:lo + cfg.batch_size]
            f_ref = f0_search[idx % n]

            def objective(xa: torch.Tensor, rows: torch.Tensor, f_ref: torch.Tensor = f_ref) -> tuple[torch.Tensor, torch.Tensor]:
                d = gs(xa) - f_ref[rows]
                if P is not None:
                    d = d @ P
                sq = (d * d).sum(dim=1)
                return 0.5 * sq, sq.detach().sqrt()

            bx, bs, xs, es = best_x[idx], best[idx], x_rows[idx], eps_rows[idx]
            if r == 0:
                start = power_start(objective, xs, es, norm, row_noise(xs, es, idx % n, seed, -1, True))
            else:
                start = random_start(xs, es, norm, row_noise(xs, es, idx % n, seed, r, norm == "l2"))
            pgd(objective, xs, start, es, norm, cfg.steps, cfg.step_max, bx, bs, stop_at_positive=False)
            best_x[idx], best[idx] = bx, bs
            done += idx.numel()
            if progress is not None:
                progress(done / total)
    check_inside(best_x, x_rows, eps_rows, norm)
    f_adv = batched(g, best_x, cfg.batch_size)  # on the original backbone
    zero = eps_rows == 0
    f_adv[zero] = f0.repeat(n_eps, 1)[zero]  # eps = 0: x' = x exactly
    shift = f_adv - f0.repeat(n_eps, 1)
    delta = (shift if P is None else shift @ P).norm(dim=1)
    delta, best_x, f_adv = delta.view(n_eps, n), best_x.view(n_eps, *x.shape), f_adv.view(n_eps, n, -1)
    monotone(eps_values, lambda a, b: a > b, delta, best_x, f_adv)
    if progress is not None:
        progress(1.0)
    pick = (lambda t: t[0]) if scalar else (lambda t: t)
    return FeatureAttackResult(
        eps=eps_values[0] if scalar else eps_values, norm=norm, delta=pick(delta).cpu(), x_adv=pick(best_x).cpu(),
        clean_features=f0.cpu(), settings=cfg, features_adv=pick(f_adv).cpu(),
    )




def _check_projector(P: torch.Tensor | None, m: int, device: torch.device) -> torch.Tensor | None:
    """A symmetric idempotent (m, m) matrix, or None."""
    if P is None:
        return None
    if not isinstance(P, torch.Tensor) or P.shape != (m, m):
        raise ValueError(f"projector must be an ({m}, {m}) tensor for features of dimension {m}, "
                         f"got {getattr(P, 'shape', type(P).__name__)}")
    Pd = P.detach().double()
    if not (torch.allclose(Pd, Pd.T, atol=1e-5) and torch.allclose(Pd @ Pd, Pd, atol=1e-4)):
        raise ValueError("projector must be an orthogonal projection (P = P^T = P @ P); see rtcore.bounds.head_projector")
    return P.detach().to(device=device, dtype=torch.float32)
