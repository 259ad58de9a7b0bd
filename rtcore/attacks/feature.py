"""The feature attack: ``Delta(x; eps) = sup ||g(x') - g(x)||_2`` estimated from below, and the
head-subspace attack (the same with an orthogonal projection P: ``sup ||P (g(x') - g(x))||_2``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..bounds import projector_basis
from ..numerics import linear_rows
from ..validation import check_features
from .base import Attack, Outcome, Result
from .engine import batched
from .search import Jobs, ProgressFn, RowPlan, Rows, RowView, Run, Stage
from .settings import AttackSettings, AttackSetup, create_strength


@dataclass(frozen=True, kw_only=True)
class FeatureAttackResult(Result):
    """``delta[e, i] = ||features_adv[e, i] - clean_features[i]||_2`` with ``features_adv = g(x_adv)``
    (projected by P when a projector is given). The adversarial features are returned so that a
    caller never runs g on ``x_adv`` again."""

    delta: torch.Tensor
    clean_features: torch.Tensor
    features_adv: torch.Tensor


class FeatureAttack(Attack[FeatureAttackResult]):
    """Ascend ``0.5 ||P (g(x') - g(x))||^2`` (P = I without a projector); score ``||P (g(x') - g(x))||``.

    ``settings.feature_restarts`` runs of the cosine schedule, the first from the power start
    (the dominant direction of the local Jacobian), the others from random points of the ball.
    """

    result_type = FeatureAttackResult
    losses = ("feature",)
    checked_as = "backbone"
    carry_key = "delta"

    def __init__(self, g: nn.Module, setup: AttackSetup, projector: torch.Tensor | None = None) -> None:
        super().__init__(g, setup)
        self.projector = projector
        self.P: torch.Tensor | None = None
        self.f0_search = torch.empty(0)

    def prepare(self, x: torch.Tensor, y: torch.Tensor | None, clean: torch.Tensor) -> None:
        check_features(clean, "backbone features")
        self.P = _check_projector(self.projector, clean.shape[1], clean.device)
        # the search ascends ||U^T d|| = ||P d|| row by row (U: P's basis), the same bits in any batch
        self.basis = None if self.P is None else projector_basis(self.P).T.to(self.P.dtype).contiguous()
        self.f0_search = clean if self.search is self.model else batched(self.search, x, self.cfg.batch_size)

    def clean_score(self, rows: Rows) -> torch.Tensor:
        return torch.zeros(len(rows), device=rows.x.device)

    def plan(self, row: RowView) -> RowPlan:
        n = self.cfg.feature_restarts
        yield Stage(tuple(Run("feature", noise=r if r else -1, start="random" if r else "power", done=(r + 1) / n)
                          for r in range(n)))

    def objective(self, xa: torch.Tensor, rows: Rows, jobs: Jobs) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.search(xa) - self.f0_search[rows.sample[jobs.row]]
        if self.basis is not None:
            d = linear_rows(d, self.basis)
        sq = (d * d).sum(dim=1)
        return 0.5 * sq, sq.detach().sqrt()

    def evaluate(self, x_adv: torch.Tensor, rows: Rows) -> dict[str, torch.Tensor]:
        f_adv = batched(self.model, x_adv, self.cfg.batch_size)  # on the original backbone
        zero = rows.eps == 0
        f_adv[zero] = rows.clean[zero]  # eps = 0: x' = x exactly
        shift = f_adv - rows.clean
        delta = (shift if self.P is None else shift @ self.P).norm(dim=1)
        return {"delta": delta, "features_adv": f_adv}

    def point_values(self, out: Outcome) -> dict[str, torch.Tensor]:
        return {"clean_features": out.clean}


def feature_attack(backbone: nn.Module | str, x: torch.Tensor, eps: float | Sequence[float], *, norm: str = "linf",
                   steps: int | None = None, restarts: int | None = None, seed: int = 0,
                   settings: str | AttackSettings | None = None, progress: ProgressFn | None = None,
                   projector: torch.Tensor | None = None) -> FeatureAttackResult:
    """Maximise ``||g(x') - g(x)||_2`` over ``x'`` in ``B_p(x, eps) ∩ [0,1]^d``.

    Returns the best value per sample over all iterates and restarts (worst case per
    sample, never an average). Delta is a lower estimate of the supremum.

    ``projector``: an orthogonal projection P (m, m); then the attack maximises the projected
    shift ``||P (g(x') - g(x))||_2`` and ``delta`` reports it (the head-subspace shift Delta_P
    when P projects onto the span of a head's weight differences, see
    :func:`rtcore.bounds.head_projector`).

    Example::

        res = rtcore.feature_attack("fmnist-cnn-pgd-linf-0.1", x, [2 / 255, 8 / 255], settings="standard")
        res.delta.shape  # (2, N)
    """
    from ..models import create_backbone

    g = create_backbone(backbone) if isinstance(backbone, str) else backbone
    cfg = create_strength(settings, steps=steps, feature_restarts=restarts)
    return FeatureAttack(g, AttackSetup(norm, cfg, seed), projector)(x, None, eps, progress)


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
