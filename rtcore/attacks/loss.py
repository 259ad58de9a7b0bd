"""The loss attack: the largest cross-entropy in the ball, without stopping at the first flip."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, Rows, Run, SearchState, check_inputs, check_label_range
from .engine import batched
from .geometry import Objective
from .settings import AttackSettings, create_strength

ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class LossAttackResult:
    """``loss[e, i]``: the largest cross-entropy found at ``x_adv[e, i]`` (leading E axis for a list of eps)."""

    eps: float | tuple[float, ...]
    norm: str
    loss: torch.Tensor
    x_adv: torch.Tensor
    settings: AttackSettings


class LossAttack(Attack):
    """Ascend and keep ``l(model(x'), y)`` (cross-entropy): ``settings.restarts`` random starts of the cosine schedule."""

    carry_key = "loss"

    def prepare(self, x: torch.Tensor, y: torch.Tensor | None, clean: torch.Tensor) -> None:
        check_label_range(y, clean.shape[1])

    def clean_score(self, rows: Rows) -> torch.Tensor:
        assert rows.y is not None
        return F.cross_entropy(rows.clean, rows.y, reduction="none")

    def plan(self, rows: Rows, state: SearchState) -> Iterator[Run]:
        n = self.cfg.restarts
        for r in range(n):
            yield Run("ce", noise=5000 + r, done=(r + 1) / n)

    def objective(self, run: Run, rows: Rows, idx: torch.Tensor) -> Objective:
        assert rows.y is not None
        yy, g = rows.y[idx], self.search

        def objective(xa: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            ce = F.cross_entropy(g(xa), yy[r], reduction="none")
            return ce, ce.detach()

        return objective

    def evaluate(self, x_adv: torch.Tensor, rows: Rows) -> dict[str, torch.Tensor]:
        assert rows.y is not None
        logits = batched(self.model, x_adv, self.cfg.batch_size)  # the original model
        return {"loss": F.cross_entropy(logits, rows.y, reduction="none")}


def loss_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | Sequence[float],
    *,
    norm: str = "linf",
    seed: int = 0,
    settings: str | AttackSettings | None = None,
    progress: ProgressFn | None = None,
) -> LossAttackResult:
    """Maximise the cross-entropy ``l(model(x'), y)`` over the ball, without stopping at the first flip.

    The adversarial loss that the loss bound is compared to: an attack that stops once a point
    is misclassified (as :func:`rtcore.attacks.attack` does) under-states it. The best iterate
    per sample is kept; monotone in eps.
    """
    eps_values, scalar, labels = check_inputs(model, x, y, eps, norm)
    cfg = create_strength(settings)
    out = LossAttack(model, cfg, norm, seed).run(x, labels, eps_values, progress)
    pick = (lambda t: t[0]) if scalar else (lambda t: t)
    return LossAttackResult(eps=eps_values[0] if scalar else eps_values, norm=norm, loss=pick(out.values["loss"]).cpu(),
                            x_adv=pick(out.x_adv).cpu(), settings=cfg)
