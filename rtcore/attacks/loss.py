"""The loss attack: the largest cross-entropy in the ball, without stopping at the first flip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, Result
from .engine import batched
from .search import Jobs, ProgressFn, RowPlan, Rows, RowView, Run, Stage
from .settings import AttackSettings, AttackSetup, create_strength


@dataclass(frozen=True, kw_only=True)
class LossAttackResult(Result):
    """``loss[e, i]``: the largest cross-entropy found, at ``x_adv[e, i]``."""

    loss: torch.Tensor


class LossAttack(Attack[LossAttackResult]):
    """Ascend and keep ``l(model(x'), y)`` (cross-entropy): ``settings.restarts`` random starts of the cosine schedule."""

    result_type = LossAttackResult
    losses = ("ce",)
    labelled = True
    carry_key = "loss"

    def clean_score(self, rows: Rows) -> torch.Tensor:
        assert rows.y is not None
        return F.cross_entropy(rows.clean, rows.y, reduction="none")

    def plan(self, row: RowView) -> RowPlan:
        n = self.cfg.restarts
        yield Stage(tuple(Run("ce", noise=5000 + r, done=(r + 1) / n) for r in range(n)))

    def objective(self, xa: torch.Tensor, rows: Rows, jobs: Jobs) -> tuple[torch.Tensor, torch.Tensor]:
        assert rows.y is not None
        ce = F.cross_entropy(self.search(xa), rows.y[jobs.row], reduction="none")
        return ce, ce.detach()

    def evaluate(self, x_adv: torch.Tensor, rows: Rows) -> dict[str, torch.Tensor]:
        assert rows.y is not None
        logits = batched(self.model, x_adv, self.cfg.batch_size)  # the original model
        return {"loss": F.cross_entropy(logits, rows.y, reduction="none")}


def loss_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | Sequence[float], *,
                norm: str = "linf", seed: int = 0, settings: str | AttackSettings | None = None,
                progress: ProgressFn | None = None) -> LossAttackResult:
    """Maximise the cross-entropy ``l(model(x'), y)`` over the ball, without stopping at the first flip.

    The adversarial loss that the loss bound is compared to: an attack that stops once a point
    is misclassified (as :func:`rtcore.attacks.attack` does) under-states it. The best iterate
    per sample is kept; monotone in eps.
    """
    return LossAttack(model, AttackSetup(norm, create_strength(settings), seed))(x, y, eps, progress)
