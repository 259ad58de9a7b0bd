"""The APGD step-size rule (Croce & Hein, ICML 2020, Algorithm 1), per slot of the loop's pool.

The step starts at ``2 eps`` with momentum 0.75, and at checkpoints (after 22% of the steps,
then at shrinking intervals down to 6%) a row whose loss went up in at most 75% of the steps
since the last checkpoint, or whose best loss did not improve since the last checkpoint (unless
its step was just halved), halves its step and restarts from its best-loss point. This follows
pyautoattack's ``APGDAttack.attack_single_run``; any loss can drive it, since the loop
(:mod:`.engine`) hands the rule each step's loss. Every slot keeps its own state and its own step
count, so runs at different steps share one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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


@dataclass
class APGDState:
    """APGD's state of every slot (the slots that run another rule are never read). The next
    checkpoint is kept per slot (``next_check``, the ``interval`` before it), so that slots at
    different steps of runs of different lengths step together without the host looking."""

    x_prev: torch.Tensor  # (S, ...)
    x_lbest: torch.Tensor  # (S, ...) the best-loss point
    g_best: torch.Tensor  # (S, ...) its gradient
    size: torch.Tensor  # (S,) step, a fraction of eps
    loss_best: torch.Tensor
    loss_prev: torch.Tensor
    loss_at_check: torch.Tensor
    rises: torch.Tensor  # (S,) steps whose loss went up since the last check
    halved_last: torch.Tensor  # (S,) bool
    last_check: torch.Tensor  # (S,) long
    next_check: torch.Tensor  # (S,) long: the iteration (1-based) of the next checkpoint
    interval: torch.Tensor  # (S,) long: the gap that led to it
    shrink: torch.Tensor  # (S,) long: how much each gap shrinks
    min_gap: torch.Tensor  # (S,) long

    @staticmethod
    def fresh(x_start: torch.Tensor, steps: torch.Tensor) -> APGDState:
        """The state at the start of runs of ``steps`` steps from ``x_start`` (:func:`checkpoints`' schedule)."""
        n, dev = x_start.shape[0], x_start.device
        minus_inf = torch.full((n,), float("-inf"), device=dev)
        s = steps.double()
        first = (0.22 * s).floor().long().clamp_min(1)
        return APGDState(x_prev=x_start.clone(), x_lbest=x_start.clone(), g_best=torch.zeros_like(x_start),
                         size=torch.full((n,), START_STEP, device=dev), loss_best=minus_inf,
                         loss_prev=minus_inf.clone(), loss_at_check=minus_inf.clone(), rises=torch.zeros(n, device=dev),
                         halved_last=torch.ones(n, dtype=torch.bool, device=dev),
                         last_check=torch.zeros(n, dtype=torch.long, device=dev), next_check=first, interval=first.clone(),
                         shrink=(0.03 * s).floor().long().clamp_min(1), min_gap=(0.06 * s).floor().long().clamp_min(1))

    def take(self, idx: torch.Tensor) -> APGDState:
        return APGDState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def cat(self, other: APGDState) -> APGDState:
        return APGDState(**{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})

    def step(self, a: torch.Tensor, t: torch.Tensor, steps: torch.Tensor, xd: torch.Tensor, grad: torch.Tensor,
             loss: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
        """The next iterate of the slots ``a`` at their steps ``t`` (of ``steps``), from iterate ``xd``,
        its gradient and loss; ``x``, ``eps``: their clean inputs and radii. Updates the state in place."""
        self.rises[a] += (loss > self.loss_prev[a]).float()
        self.loss_prev[a] = loss
        up = loss > self.loss_best[a]
        self.loss_best[a] = torch.where(up, loss, self.loss_best[a])
        self.x_lbest[a] = torch.where(bshape(up, xd), xd, self.x_lbest[a])
        self.g_best[a] = torch.where(bshape(up, xd), grad, self.g_best[a])
        mom = torch.where(t > 0, MOMENTUM, 1.0).to(xd.dtype)
        nxt = self.next_check[a]
        check = (t + 1 == nxt) & (nxt < steps)
        stalled = self.rises[a] <= RHO * (t + 1 - self.last_check[a])
        no_gain = ~self.halved_last[a] & (self.loss_at_check[a] >= self.loss_best[a])
        halve = check & (stalled | no_gain)
        self.halved_last[a] = torch.where(check, halve, self.halved_last[a])
        self.loss_at_check[a] = torch.where(check, self.loss_best[a], self.loss_at_check[a])
        self.rises[a] = torch.where(check, 0.0, self.rises[a])
        self.size[a] = torch.where(halve, self.size[a] / 2, self.size[a])
        xd = torch.where(bshape(halve, xd), self.x_lbest[a], xd)  # restart from the best-loss point
        grad = torch.where(bshape(halve, xd), self.g_best[a], grad)
        mom = torch.where(halve, 1.0, mom)
        self.last_check[a] = torch.where(check, t + 1, self.last_check[a])
        gap = torch.maximum(self.interval[a] - self.shrink[a], self.min_gap[a])
        self.interval[a] = torch.where(check, gap, self.interval[a])
        self.next_check[a] = torch.where(check, nxt + gap, nxt)
        z = project(xd + bshape(eps * self.size[a], xd) * ascent_direction(grad, norm), x, eps, norm)
        new = project(xd + bshape(mom, xd) * (z - xd) + bshape(1 - mom, xd) * (xd - self.x_prev[a]), x, eps, norm)
        self.x_prev[a] = xd
        return new
