"""End-to-end attacks on a classifier: CE and margin runs, then targeted margin runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_eps, check_norm
from ..validation import check_eval_mode, check_images, check_labels
from .apgd import apgd
from .engine import (
    batched,
    check_inside,
    expand_eps,
    model_device,
    monotone,
    pgd,
    random_start,
    row_noise,
    search_model,
)
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
    targeted margin runs ``z_t - z_y`` (or its DLR form, ``settings.target_loss``) for the
    ``settings.targets`` most likely wrong classes, each with the cosine step schedule or APGD's
    rule (``settings.step_rule``, :mod:`.apgd`); with ``settings.autoattack`` AutoAttack runs
    instead (:mod:`.autoattack`). Points already broken stop early. The eps values are attacked in increasing order and a point broken at a
    smaller eps is not attacked again: its witness lies in every larger ball. The iterations
    run on a fused copy of the model (``settings.fuse``); ``robust`` and ``logits_adv`` are
    recomputed on ``model`` from the returned ``x_adv``.
    """
    check_norm(norm)
    eps_values, scalar = check_eps(eps, norm)
    check_images(x)
    y = check_labels(y, x.shape[0])
    check_eval_mode(model, "model")
    cfg = resolve_settings(settings, steps=steps, restarts=restarts)
    res = run_attack(model, x, y, eps_values, norm, cfg, seed, progress)
    if not scalar:
        return res
    return replace(res, eps=eps_values[0], robust=res.robust[0], x_adv=res.x_adv[0], logits_adv=res.logits_adv[0])


def run_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], norm: str,
               cfg: AttackSettings, seed: int, progress: ProgressFn | None = None) -> AttackResult:
    """:func:`attack` on checked inputs, for a list of eps (results ``(E, N)``); eps is only
    required to be finite and >= 0 here (:mod:`rtcore.sanity` attacks at a large l2 eps)."""
    eps_values = tuple(float(e) for e in eps_values)
    device = model_device(model, x)
    x, y = x.to(device=device, dtype=torch.float32), y.to(device)
    n, n_eps = x.shape[0], len(eps_values)
    clean_logits = batched(model, x, cfg.batch_size)
    n_classes = clean_logits.shape[1]
    if int(y.max()) >= n_classes:
        raise ValueError(f"label {int(y.max())} is out of range for a model with {n_classes} outputs")
    clean_correct = clean_logits.argmax(dim=1) == y
    search = search_model(model, x, cfg.fuse)
    order = sorted(range(n_eps), key=lambda i: eps_values[i])
    best_x = x.repeat(n_eps, 1, 1, 1).view(n_eps, *x.shape)
    logits_adv = clean_logits.repeat(n_eps, 1).view(n_eps, n, n_classes)
    broken = ~clean_correct  # misclassified on the original model at a smaller eps (or clean)
    carried_x = x.clone()  # their witnesses, valid in every larger ball
    for j, i in enumerate(order):
        e = eps_values[i]
        todo = torch.nonzero(~broken).flatten() if e > 0 else torch.empty(0, dtype=torch.long, device=device)
        xb = carried_x.clone()
        if todo.numel():
            sub = None if progress is None else (lambda f, j=j: progress((j + f) / n_eps))
            if cfg.autoattack:
                from .autoattack import autoattack_search

                xb[todo] = autoattack_search(search, x[todo], y[todo], e, norm, cfg, seed, sub)
            else:
                xb[todo] = _pgd_search(search, x[todo], y[todo], todo, clean_logits[todo], e, norm, cfg, seed, sub)
        logits_i = batched(model, xb, cfg.batch_size)  # the original model decides
        best_x[i], logits_adv[i] = xb, logits_i
        newly = todo[logits_i[todo].argmax(dim=1) != y[todo]]
        broken[newly] = True
        carried_x[newly] = xb[newly]
    eps_rows = expand_eps(eps_values, n, device)
    check_inside(best_x.view(n_eps * n, *x.shape[1:]), x.repeat(n_eps, 1, 1, 1), eps_rows, norm)
    robust = (logits_adv.argmax(dim=2) == y) & clean_correct
    monotone(eps_values, lambda a, b: ~a & b, robust, best_x, logits_adv)  # holds by construction; kept as a guard
    if progress is not None:
        progress(1.0)
    return AttackResult(eps=eps_values, norm=norm, robust=robust.cpu(), x_adv=best_x.cpu(),
                        logits_adv=logits_adv.cpu(), clean_correct=clean_correct.cpu(), settings=cfg)


def _pgd_search(search: nn.Module, x: torch.Tensor, y: torch.Tensor, sample: torch.Tensor,
                clean_logits: torch.Tensor, eps: float, norm: str, cfg: AttackSettings, seed: int,
                progress: ProgressFn | None) -> torch.Tensor:
    """The PGD runs at one eps on the given points (``sample``: their indices in the caller's
    input set, which seed the random starts); returns the best iterate per point."""
    n, n_classes = x.shape[0], clean_logits.shape[1]
    ranked = clean_logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    n_targets = min(cfg.targets, n_classes - 1)
    eps_rows = torch.full((n,), eps, device=x.device, dtype=torch.float32)
    best_x = x.clone()
    best = margin_scores(clean_logits, y)
    runs: list[tuple[str, int]] = [(loss, -1) for loss in cfg.losses] + [("target", j) for j in range(n_targets)]
    total = max(len(runs) * cfg.restarts, 1)
    dlr = cfg.target_loss == "dlr" and n_classes >= 4  # the DLR denominator reads the 4 largest logits
    for r in range(cfg.restarts):
        for k, (loss_name, target_rank) in enumerate(runs):
            live = torch.nonzero(best <= 0).flatten()  # broken points (best > 0) are done
            for lo in range(0, live.numel(), cfg.batch_size):
                idx = live[lo:lo + cfg.batch_size]
                yy, tt = y[idx], ranked[idx, max(target_rank, 0)]

                def objective(xa: torch.Tensor, rows: torch.Tensor, yy: torch.Tensor = yy, tt: torch.Tensor = tt,
                              loss_name: str = loss_name) -> tuple[torch.Tensor, torch.Tensor]:
                    z = search(xa)
                    yr = yy[rows]
                    score = margin_scores(z, yr)
                    if loss_name == "ce":
                        loss = F.cross_entropy(z, yr, reduction="none")
                    elif loss_name == "margin":
                        loss = score
                    else:
                        loss = z.gather(1, tt[rows][:, None]).squeeze(1) - z.gather(1, yr[:, None]).squeeze(1)
                        if dlr:  # APGD-T's targeted DLR: the same margin, scale-free
                            top = z.topk(4, dim=1).values
                            loss = loss / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
                    return loss, score.detach()

                bx, bs, xs, es = best_x[idx], best[idx], x[idx], eps_rows[idx]
                noise = row_noise(xs, es, sample[idx], seed, 1000 + r * 64 + k, norm == "l2")
                start = random_start(xs, es, norm, noise)
                if cfg.step_rule == "apgd":
                    apgd(objective, xs, start, es, norm, cfg.steps, bx, bs, stop_at_positive=True)
                else:
                    pgd(objective, xs, start, es, norm, cfg.steps, cfg.step_max, bx, bs, stop_at_positive=True)
                best_x[idx], best[idx] = bx, bs
            if progress is not None:
                progress((r * len(runs) + k + 1) / total)
    return best_x


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
    eps_values, scalar = check_eps(eps, norm)
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
    search = search_model(model, x, cfg.fuse)  # the iterations; the loss is recomputed on model below
    for r in range(cfg.restarts):
        for lo in range(0, live.numel(), cfg.batch_size):
            idx = live[lo:lo + cfg.batch_size]
            yy = y_rows[idx]

            def objective(xa: torch.Tensor, rows: torch.Tensor, yy: torch.Tensor = yy) -> tuple[torch.Tensor, torch.Tensor]:
                ce = F.cross_entropy(search(xa), yy[rows], reduction="none")
                return ce, ce.detach()

            bx, bs, xs, es = best_x[idx], best[idx], x_rows[idx], eps_rows[idx]
            noise = row_noise(xs, es, idx % n, seed, 5000 + r, norm == "l2")
            pgd(objective, xs, random_start(xs, es, norm, noise), es, norm, cfg.steps, cfg.step_max, bx, bs,
                stop_at_positive=False)
            best_x[idx], best[idx] = bx, bs
        if progress is not None:
            progress((r + 1) / cfg.restarts)
    check_inside(best_x, x_rows, eps_rows, norm)
    loss = F.cross_entropy(batched(model, best_x, cfg.batch_size), y_rows, reduction="none")  # original model
    loss, best_x = loss.view(n_eps, n), best_x.view(n_eps, *x.shape)
    monotone(eps_values, lambda a, b: a > b, loss, best_x)
    pick = (lambda t: t[0]) if scalar else (lambda t: t)
    return LossAttackResult(eps=eps_values[0] if scalar else eps_values, norm=norm, loss=pick(loss).cpu(),
                            x_adv=pick(best_x).cpu(), settings=cfg)
