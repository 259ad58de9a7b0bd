"""End-to-end attacks on a classifier: CE and margin runs, then targeted margin runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_eps, check_norm
from ..validation import check_eval_mode, check_images, check_labels
from .engine import batched, check_inside, expand_eps, model_device, monotone, pgd, random_start, row_noise
from .settings import AttackSettings, resolve_settings

ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class AttackResult:
    """``robust[e, i]``: the point is correctly classified at every iterate found (a lower
    estimate of non-robustness, so ``robust.mean()`` is an upper estimate of robust accuracy)."""

    eps: float | tuple[float, ...]
    norm: str
    robust: torch.Tensor
    x_adv: torch.Tensor
    logits_adv: torch.Tensor
    clean_correct: torch.Tensor
    settings: AttackSettings




def margin_scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{k != y} z_k - z_y``: positive exactly when the point is misclassified (ties count)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf"))
    return other.amax(dim=1) - z_y


def attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | Sequence[float],
    *,
    norm: str = "linf",
    steps: int | None = None,
    restarts: int | None = None,
    seed: int = 0,
    settings: str | AttackSettings | None = None,
    progress: ProgressFn | None = None,
) -> AttackResult:
    """End-to-end attack on a classifier ``model`` (images in [0,1] -> logits).

    Per restart: one run per untargeted loss in ``settings.losses`` ('ce', 'margin'), then
    targeted margin runs ``z_t - z_y`` for the ``settings.targets`` most likely wrong classes.
    Points already broken stop early. ``robust`` is recomputed from the returned ``x_adv``.
    """
    check_norm(norm)
    eps_values, scalar = check_eps(eps)
    check_images(x)
    y = check_labels(y, x.shape[0])
    check_eval_mode(model, "model")
    cfg = resolve_settings(settings, steps=steps, restarts=restarts)
    device = model_device(model, x)
    x, y = x.to(device=device, dtype=torch.float32), y.to(device)
    n, n_eps = x.shape[0], len(eps_values)
    clean_logits = batched(model, x, cfg.batch_size)
    n_classes = clean_logits.shape[1]
    if int(y.max()) >= n_classes:
        raise ValueError(f"label {int(y.max())} is out of range for a model with {n_classes} outputs")
    clean_correct = clean_logits.argmax(dim=1) == y
    ranked = clean_logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    n_targets = min(cfg.targets, n_classes - 1)
    eps_rows = expand_eps(eps_values, n, device)
    x_rows, y_rows = x.repeat(n_eps, 1, 1, 1), y.repeat(n_eps)
    best_x = x_rows.clone()
    best = margin_scores(clean_logits, y).repeat(n_eps)
    best[eps_rows == 0] = float("inf")  # nothing to search at eps = 0
    runs: list[tuple[str, int]] = [(loss, -1) for loss in cfg.losses] + [("target", j) for j in range(n_targets)]
    total = max(len(runs) * cfg.restarts, 1)
    for r in range(cfg.restarts):
        for k, (loss_name, target_rank) in enumerate(runs):
            live = torch.nonzero(best <= 0).flatten()  # broken points (best > 0) are done
            for lo in range(0, live.numel(), cfg.batch_size):
                idx = live[lo:lo + cfg.batch_size]
                yy = y_rows[idx]
                tt = ranked[idx % n, max(target_rank, 0)]

                def objective(xa: torch.Tensor, rows: torch.Tensor, yy: torch.Tensor = yy, tt: torch.Tensor = tt,
                              loss_name: str = loss_name) -> tuple[torch.Tensor, torch.Tensor]:
                    z = model(xa)
                    yr = yy[rows]
                    score = margin_scores(z, yr)
                    if loss_name == "ce":
                        loss = F.cross_entropy(z, yr, reduction="none")
                    elif loss_name == "margin":
                        loss = score
                    else:
                        loss = z.gather(1, tt[rows][:, None]).squeeze(1) - z.gather(1, yr[:, None]).squeeze(1)
                    return loss, score.detach()

                bx, bs, xs, es = best_x[idx], best[idx], x_rows[idx], eps_rows[idx]
                noise = row_noise(xs, es, idx % n, seed, 1000 + r * 64 + k, norm == "l2")
                pgd(objective, xs, random_start(xs, es, norm, noise), es, norm, cfg.steps, cfg.step_max, bx, bs,
                     stop_at_positive=True)
                best_x[idx], best[idx] = bx, bs
            if progress is not None:
                progress((r * len(runs) + k + 1) / total)
    # misclassified clean points: x itself is the witness
    wrong = ~clean_correct.repeat(n_eps)
    best_x[wrong] = x_rows[wrong]
    check_inside(best_x, x_rows, eps_rows, norm)
    logits_adv = batched(model, best_x, cfg.batch_size)
    robust = (logits_adv.argmax(dim=1) == y_rows) & clean_correct.repeat(n_eps)
    robust, best_x = robust.view(n_eps, n), best_x.view(n_eps, *x.shape)
    logits_adv = logits_adv.view(n_eps, n, -1)
    monotone(eps_values, lambda a, b: ~a & b, robust, best_x, logits_adv)
    if progress is not None:
        progress(1.0)
    sq = (lambda t: t[0]) if scalar else (lambda t: t)
    return AttackResult(
        eps=eps_values[0] if scalar else eps_values, norm=norm, robust=sq(robust).cpu(),
        x_adv=sq(best_x).cpu(), logits_adv=sq(logits_adv).cpu(), clean_correct=clean_correct.cpu(), settings=cfg,
    )


@dataclass(frozen=True)
class LossAttackResult:
    """``loss[e, i]``: the largest cross-entropy found at ``x_adv[e, i]`` (leading E axis for a list of eps)."""

    eps: float | tuple[float, ...]
    norm: str
    loss: torch.Tensor
    x_adv: torch.Tensor
    settings: AttackSettings


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
    is misclassified (as :func:`attack` does) under-states it. ``settings.restarts`` random
    starts of ``settings.steps`` steps; the best iterate per sample is kept; monotone in eps.
    """
    check_norm(norm)
    eps_values, scalar = check_eps(eps)
    check_images(x)
    y = check_labels(y, x.shape[0])
    check_eval_mode(model, "model")
    cfg = resolve_settings(settings)
    device = model_device(model, x)
    x, y = x.to(device=device, dtype=torch.float32), y.to(device)
    n, n_eps = x.shape[0], len(eps_values)
    clean_logits = batched(model, x, cfg.batch_size)
    if int(y.max()) >= clean_logits.shape[1]:
        raise ValueError(f"label {int(y.max())} is out of range for a model with {clean_logits.shape[1]} outputs")
    eps_rows = expand_eps(eps_values, n, device)
    x_rows, y_rows = x.repeat(n_eps, 1, 1, 1), y.repeat(n_eps)
    best_x = x_rows.clone()
    best = F.cross_entropy(clean_logits, y, reduction="none").repeat(n_eps)
    live = torch.nonzero(eps_rows > 0).flatten()
    for r in range(cfg.restarts):
        for lo in range(0, live.numel(), cfg.batch_size):
            idx = live[lo:lo + cfg.batch_size]
            yy = y_rows[idx]

            def objective(xa: torch.Tensor, rows: torch.Tensor, yy: torch.Tensor = yy) -> tuple[torch.Tensor, torch.Tensor]:
                ce = F.cross_entropy(model(xa), yy[rows], reduction="none")
                return ce, ce.detach()

            bx, bs, xs, es = best_x[idx], best[idx], x_rows[idx], eps_rows[idx]
            noise = row_noise(xs, es, idx % n, seed, 5000 + r, norm == "l2")
            pgd(objective, xs, random_start(xs, es, norm, noise), es, norm, cfg.steps, cfg.step_max, bx, bs,
                stop_at_positive=False)
            best_x[idx], best[idx] = bx, bs
        if progress is not None:
            progress((r + 1) / cfg.restarts)
    check_inside(best_x, x_rows, eps_rows, norm)
    loss = F.cross_entropy(batched(model, best_x, cfg.batch_size), y_rows, reduction="none")
    loss, best_x = loss.view(n_eps, n), best_x.view(n_eps, *x.shape)
    monotone(eps_values, lambda a, b: a > b, loss, best_x)
    pick = (lambda t: t[0]) if scalar else (lambda t: t)
    return LossAttackResult(eps=eps_values[0] if scalar else eps_values, norm=norm, loss=pick(loss).cpu(),
                            x_adv=pick(best_x).cpu(), settings=cfg)
