"""End-to-end attacks on a classifier: the runs of its plan (:mod:`.plans`) or AutoAttack (:mod:`.autoattack`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .autoattack import autoattack_search
from .base import Attack, Outcome, Result
from .engine import batched
from .plans import create_plan
from .search import Jobs, ProgressFn, RowPlan, Rows, RowView
from .settings import AttackSettings, AttackSetup, create_strength


@dataclass(frozen=True, kw_only=True)
class AttackResult(Result):
    """``robust[e, i]``: the point is correctly classified at every iterate found (a lower
    estimate of non-robustness, so ``robust.mean()`` is an upper estimate of robust accuracy);
    ``logits_adv[e, i]``: the original model's logits at ``x_adv[e, i]``; ``clean_correct[i]``."""

    robust: torch.Tensor
    logits_adv: torch.Tensor
    clean_correct: torch.Tensor


def margin_scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{k != y} z_k - z_y``: positive exactly when the point is misclassified (ties count)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf"))
    return other.amax(dim=1) - z_y


#: the losses of the end-to-end runs (a run's ``loss``)
LOSSES = ("ce", "margin", "target")


def class_losses(z: torch.Tensor, y: torch.Tensor, loss: torch.Tensor, target: torch.Tensor,
                 dlr: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss to ascend, margin score)`` of logits ``z``, per row the loss of index ``loss`` in
    :data:`LOSSES`: "ce" (cross-entropy), "margin" (``max_{k != y} z_k - z_y``) or "target"
    (``z_t - z_y`` for the row's ``target`` t, divided by ``z_(1) - (z_(3) + z_(4)) / 2`` when ``dlr``:
    APGD-T's scale-free targeted DLR loss). Every row's values depend on its own logits only."""
    score = margin_scores(z, y)
    z_y = z.gather(1, y[:, None]).squeeze(1)
    toward = z.gather(1, target.clamp_min(0)[:, None]).squeeze(1) - z_y
    if dlr:
        top = z.topk(4, dim=1).values
        toward = toward / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
    out = torch.where(loss == 0, F.cross_entropy(z, y, reduction="none"), torch.where(loss == 1, score, toward))
    return out, score.detach()


class EndToEndAttack(Attack[AttackResult]):
    """Break a classifier's decision: a row scores ``max_{k != y} z_k - z_y`` and stops once it is > 0.

    The runs are those of the plan ``settings.plan`` names (:mod:`.plans`): untargeted runs of
    ``settings.losses`` ('ce', 'margin') and targeted runs ``z_t - z_y`` (or its DLR form,
    ``settings.target_loss``). With ``settings.autoattack`` AutoAttack searches instead (:mod:`.autoattack`).
    """

    result_type = AttackResult
    losses = LOSSES
    labelled = True
    stops = True
    carry_key = "robust"

    def prepare(self, x: torch.Tensor, y: torch.Tensor | None, clean: torch.Tensor) -> None:
        self.n_classes = int(clean.shape[1])
        self.dlr = self.cfg.target_loss == "dlr" and self.n_classes >= 4  # the DLR denominator reads 4 logits

    def broken_clean(self, clean: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        assert y is not None
        return clean.argmax(dim=1) != y

    @staticmethod
    def better(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ~a & b  # broken at the smaller eps, robust at the larger: the witness carries over

    def clean_score(self, rows: Rows) -> torch.Tensor:
        assert rows.y is not None
        return margin_scores(rows.clean, rows.y)

    def plan(self, row: RowView) -> RowPlan:
        return create_plan(self, row)

    def objective(self, xa: torch.Tensor, rows: Rows, jobs: Jobs) -> tuple[torch.Tensor, torch.Tensor]:
        assert rows.y is not None
        return class_losses(self.search(xa), rows.y[jobs.row], jobs.loss, jobs.target, self.dlr)

    def evaluate(self, x_adv: torch.Tensor, rows: Rows) -> dict[str, torch.Tensor]:
        assert rows.y is not None
        logits = batched(self.model, x_adv, self.cfg.batch_size)  # the original model decides
        broken = logits.argmax(dim=1) != rows.y
        return {"robust": ~broken & (rows.clean.argmax(dim=1) == rows.y), "logits_adv": logits, "broken": broken}

    def point_values(self, out: Outcome) -> dict[str, torch.Tensor]:
        assert out.y is not None
        return {"clean_correct": out.clean.argmax(dim=1) == out.y}

    def search_rows(self, rows: Rows, later: list[list[int]] | None = None,
                    progress: ProgressFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.autoattack:
            return super().search_rows(rows, later, progress)
        return self._autoattack_rows(rows, later, progress)

    def _autoattack_rows(self, rows: Rows, later: list[list[int]] | None,
                         progress: ProgressFn | None) -> tuple[torch.Tensor, torch.Tensor]:
        """AutoAttack at one eps at a time, by increasing eps, on the points it has not broken at a smaller eps."""
        assert rows.y is not None
        best_x = rows.x.clone()
        moot = torch.zeros(len(rows), dtype=torch.bool, device=rows.x.device)
        groups = list(dict.fromkeys(rows.eps_index.tolist()))  # rows come by increasing eps
        for j, e in enumerate(groups):
            sub = torch.nonzero((rows.eps_index == e) & ~moot).flatten()
            sub_progress = None if progress is None else (lambda f, j=j: progress((j + f) / len(groups)))
            if sub.numel():
                found, fooled = autoattack_search(self.search, rows.x[sub], rows.y[sub], self.eps_values[e], self.setup,
                                                  sub_progress)
                best_x[sub] = found
                for i in sub[fooled].tolist() if later is not None else []:
                    moot[later[i]] = True
        return best_x, moot


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | Sequence[float], *, norm: str = "linf",
           steps: int | None = None, restarts: int | None = None, seed: int = 0,
           settings: str | AttackSettings | None = None, progress: ProgressFn | None = None) -> AttackResult:
    """End-to-end attack on a classifier ``model`` (images in [0,1] -> logits); see :class:`EndToEndAttack`.

    ``steps`` and ``restarts`` override those of ``settings`` (default 'standard') for every run of this
    attack. Points already broken stop early. The eps values are attacked in increasing order and a point
    broken at a smaller eps is not attacked again: its witness lies in every larger ball. The
    iterations run on a fused copy of the model (``settings.fuse``); ``robust`` and ``logits_adv``
    are recomputed on ``model`` from the returned ``x_adv``.

    Example::

        res = rtcore.attack(model, x, y, [2 / 255, 8 / 255], settings="strong")
        res.robust.float().mean(dim=1)  # robust accuracy per eps
    """
    cfg = create_strength(settings, steps=steps, e2e_steps=steps, restarts=restarts)  # steps: of every run here
    return EndToEndAttack(model, AttackSetup(norm, cfg, seed))(x, y, eps, progress)


def run_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], setup: AttackSetup,
               progress: ProgressFn | None = None) -> AttackResult:
    """:func:`attack` on checked inputs, for a list of eps (results ``(E, N)``); eps is only
    required to be finite and >= 0 here (:mod:`rtcore.sanity` attacks at a large l2 eps)."""
    att = EndToEndAttack(model, setup)
    return att.result(att.run(x, y, eps_values, progress))
