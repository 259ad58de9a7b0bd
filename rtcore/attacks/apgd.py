"""The APGD step-size rule (Croce & Hein, ICML 2020, Algorithm 1) for rtcore's end-to-end runs.

``AttackSettings(step_rule="apgd")`` replaces the cosine schedule of :func:`.engine.pgd` in the
end-to-end attack: the step starts at ``2 eps`` with momentum 0.75, and at checkpoints (after
22% of the steps, then at shrinking intervals down to 6%) a row whose loss went up in at most 75%
of the steps since the last checkpoint, or whose best loss did not improve since the last
checkpoint (unless its step was just halved), halves its step and restarts from its best-loss
point. This follows pyautoattack's ``APGDAttack.attack_single_run``; any rtcore loss (CE, margin,
targeted margin) can drive it. As in :func:`.engine.pgd`, every iterate is scored, the best per
row is kept, and with ``stop_at_positive`` a row stops once misclassified.
"""

from __future__ import annotations

import torch

from .engine import COMPACT_EVERY, ascent_direction, bshape, keep_best, project

MOMENTUM = 0.75
RHO = 0.75  # a row whose loss rose in at most this fraction of the steps since the last check halves its step
START_STEP = 2.0  # fraction of eps


def checkpoints(steps: int) -> list[int]:
    """The iterations after which the step sizes are checked (APGD's p_j schedule)."""
    k, dec, k_min = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, i = [], k
    while i < steps:
        out.append(i)
        k = max(k - dec, k_min)
        i += k
    return out


def apgd(objective, x: torch.Tensor, x_start: torch.Tensor, eps: torch.Tensor, norm: str,  # type: ignore[no-untyped-def]
         steps: int, best_x: torch.Tensor, best_score: torch.Tensor, stop_at_positive: bool) -> None:
    """One APGD run from ``x_start``; updates ``best_x``/``best_score`` in place (see :func:`.engine.pgd`)."""
    n, dev = x.shape[0], x.device
    active = torch.arange(n, device=dev)
    x_cur, x_prev = x_start.clone(), x_start.clone()
    step = torch.full((n,), START_STEP, device=dev)
    loss_best = torch.full((n,), float("-inf"), device=dev)
    loss_prev = torch.full((n,), float("-inf"), device=dev)
    loss_at_check = torch.full((n,), float("-inf"), device=dev)
    x_lbest, g_best = x_start.clone(), torch.zeros_like(x_start)
    rises = torch.zeros(n, device=dev)
    halved_last = torch.ones(n, dtype=torch.bool, device=dev)
    checks, last_check = set(checkpoints(steps)), 0
    for t in range(steps + 1):
        last = t == steps
        xa = x_cur[active].detach().requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            loss, score = objective(xa, active)
        keep_best(score, xa, active, best_x, best_score)
        if last:
            break
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        with torch.no_grad():
            a, lo, xd = active, loss.detach(), xa.detach()
            rises[a] += (lo > loss_prev[a]).float()
            loss_prev[a] = lo
            up = lo > loss_best[a]
            loss_best[a] = torch.where(up, lo, loss_best[a])
            x_lbest[a] = torch.where(bshape(up, xd), xd, x_lbest[a])
            g_best[a] = torch.where(bshape(up, xd), grad, g_best[a])
            mom = torch.full((a.numel(),), MOMENTUM if t > 0 else 1.0, device=dev)
            if t + 1 in checks:
                stalled = rises[a] <= RHO * (t + 1 - last_check)
                no_gain = ~halved_last[a] & (loss_at_check[a] >= loss_best[a])
                halve = stalled | no_gain
                halved_last[a], loss_at_check[a], rises[a] = halve, loss_best[a], 0.0
                step[a] = torch.where(halve, step[a] / 2, step[a])
                xd = torch.where(bshape(halve, xd), x_lbest[a], xd)  # restart from the best-loss point
                grad = torch.where(bshape(halve, xd), g_best[a], grad)
                mom = torch.where(halve, 1.0, mom)
                last_check = t + 1
            e = eps[a]
            z = project(xd + bshape(e * step[a], xd) * ascent_direction(grad, norm), x[a], e, norm)
            new = project(xd + bshape(mom, xd) * (z - xd) + bshape(1 - mom, xd) * (xd - x_prev[a]), x[a], e, norm)
            if stop_at_positive:
                stopped = score > 0
                new = torch.where(bshape(stopped, xd), xd, new)
            x_prev[a] = xd
            x_cur[a] = new
            if stop_at_positive and (x.device.type == "cpu" or (t + 1) % COMPACT_EVERY == 0):
                active = active[~stopped]
                if active.numel() == 0:
                    break
