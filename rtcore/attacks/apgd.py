"""The APGD step-size rule (Croce & Hein, ICML 2020, Algorithm 1) as a :class:`~.engine.StepRule`.

The step starts at ``2 eps`` with momentum 0.75, and at checkpoints (after 22% of the steps,
then at shrinking intervals down to 6%) a row whose loss went up in at most 75% of the steps
since the last checkpoint, or whose best loss did not improve since the last checkpoint (unless
its step was just halved), halves its step and restarts from its best-loss point. This follows
pyautoattack's ``APGDAttack.attack_single_run``; any loss can drive it, since the loop
(:func:`.engine.descend`) hands the rule each step's loss.
"""

from __future__ import annotations

import torch

from .geometry import ascent_direction, bshape, project

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


class APGDRule:
    """APGD's momentum step with per-row step halving at :func:`checkpoints`, for one batch."""

    def __init__(self, steps: int, x_start: torch.Tensor) -> None:
        n, dev = x_start.shape[0], x_start.device
        self.x_prev = x_start.clone()
        self.size = torch.full((n,), START_STEP, device=dev)
        self.loss_best = torch.full((n,), float("-inf"), device=dev)
        self.loss_prev = torch.full((n,), float("-inf"), device=dev)
        self.loss_at_check = torch.full((n,), float("-inf"), device=dev)
        self.x_lbest, self.g_best = x_start.clone(), torch.zeros_like(x_start)
        self.rises = torch.zeros(n, device=dev)
        self.halved_last = torch.ones(n, dtype=torch.bool, device=dev)
        self.checks, self.last_check = set(checkpoints(steps)), 0

    def step(self, t: int, active: torch.Tensor, xd: torch.Tensor, grad: torch.Tensor, loss: torch.Tensor,
             x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
        a, dev = active, xd.device
        self.rises[a] += (loss > self.loss_prev[a]).float()
        self.loss_prev[a] = loss
        up = loss > self.loss_best[a]
        self.loss_best[a] = torch.where(up, loss, self.loss_best[a])
        self.x_lbest[a] = torch.where(bshape(up, xd), xd, self.x_lbest[a])
        self.g_best[a] = torch.where(bshape(up, xd), grad, self.g_best[a])
        mom = torch.full((a.numel(),), MOMENTUM if t > 0 else 1.0, device=dev)
        if t + 1 in self.checks:
            stalled = self.rises[a] <= RHO * (t + 1 - self.last_check)
            no_gain = ~self.halved_last[a] & (self.loss_at_check[a] >= self.loss_best[a])
            halve = stalled | no_gain
            self.halved_last[a], self.loss_at_check[a], self.rises[a] = halve, self.loss_best[a], 0.0
            self.size[a] = torch.where(halve, self.size[a] / 2, self.size[a])
            xd = torch.where(bshape(halve, xd), self.x_lbest[a], xd)  # restart from the best-loss point
            grad = torch.where(bshape(halve, xd), self.g_best[a], grad)
            mom = torch.where(halve, 1.0, mom)
            self.last_check = t + 1
        e = eps[a]
        z = project(xd + bshape(e * self.size[a], xd) * ascent_direction(grad, norm), x[a], e, norm)
        new = project(xd + bshape(mom, xd) * (z - xd) + bshape(1 - mom, xd) * (xd - self.x_prev[a]), x[a], e, norm)
        self.x_prev[a] = xd
        return new
