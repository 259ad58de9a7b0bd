"""The projected-gradient engine shared by the feature attack and the end-to-end attacks.

Norm geometry (random starts, ascent directions, projection onto the ball and [0, 1]), one
PGD run that keeps the best iterate per row, the per-row seeded noise that makes a result
independent of which rows share a batch, and the monotone-in-eps fix-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: on an accelerator, stopped rows leave the PGD batch every this many steps (one host sync each time)
COMPACT_EVERY = 8


# ---------------------------------------------------------------- norm geometry

def flat_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    f = t.flatten(1)
    return f.abs().amax(dim=1) if norm == "linf" else f.norm(dim=1)


def bshape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def row_noise(x: torch.Tensor, eps: torch.Tensor, sample: torch.Tensor, seed: int, run: int, normal: bool) -> torch.Tensor:
    """Noise of x's shape, drawn row by row from a generator seeded by (seed, run, sample, eps).

    A row's start does not depend on which other rows share its batch, so a result for one
    eps is the same whether it was computed alone or in a sweep (and can be cached per eps).
    """
    out = torch.empty(x.shape, dtype=torch.float32)
    gen = torch.Generator()
    for j, (i, e) in enumerate(zip(sample.tolist(), eps.tolist())):
        gen.manual_seed(hash((int(seed), int(run), int(i), round(float(e) * 1e9))) & ((1 << 62) - 1))
        out[j] = torch.randn(x.shape[1:], generator=gen) if normal else torch.rand(x.shape[1:], generator=gen)
    return out.to(device=x.device, dtype=x.dtype)


def random_start(x: torch.Tensor, eps: torch.Tensor, norm: str, noise: torch.Tensor) -> torch.Tensor:
    """A random point of the ball (never x itself, where the feature-loss gradient is 0).

    ``noise`` is uniform in [0, 1) for linf and standard normal for l2.
    """
    e = bshape(eps, x)
    if norm == "linf":
        delta = (2 * noise - 1) * e
    else:
        n = noise.flatten(1)
        r = 0.5 + 0.5 * torch.sigmoid(n[:, 0])  # radius in (0.5, 1) eps, from the same row noise
        delta = noise / bshape(n.norm(dim=1).clamp_min(1e-12), x) * e * bshape(r, x)
    return (x + delta).clamp(0, 1)


def power_start(objective: Objective, x: torch.Tensor, eps: torch.Tensor, norm: str, noise: torch.Tensor,
                 iters: int = 5) -> torch.Tensor:
    """A start along the dominant direction of the local Jacobian J of g.

    At a small perturbation v the gradient of ``0.5 ||g(x+v) - g(x)||^2`` is ``J^T J v``, so a
    few normalised gradient steps are power iterations (from standard-normal ``noise``). The
    start is ``x + eps * sign(v)`` (linf) or ``x + eps * v / ||v||`` (l2); coordinates with
    zero gradient keep the sign of the initial noise.
    """
    rows = torch.arange(x.shape[0], device=x.device)
    v = noise / bshape(flat_norm(noise, "l2").clamp_min(1e-20), noise)
    r = bshape(eps, x) * 1e-2
    for _ in range(iters):
        xa = (x + r * v).clamp(0, 1).detach().requires_grad_(True)
        loss, _ = objective(xa, rows)
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        n = bshape(flat_norm(grad, "l2"), grad)
        v = torch.where(n > 0, grad / n.clamp_min(1e-30), v)
    if norm == "linf":
        v = torch.where(v != 0, v.sign(), noise.sign())
    else:
        v = v / bshape(flat_norm(v, "l2").clamp_min(1e-20), v)
    return (x + bshape(eps, x) * v).clamp(0, 1)


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / bshape(flat_norm(grad, "l2").clamp_min(1e-20), grad)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Into the eps-ball around x, then into [0, 1] (clamping only shrinks the perturbation)."""
    e = bshape(eps, x)
    delta = x_adv - x
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, e), -e)
    else:
        n = bshape(flat_norm(delta, "l2"), x)
        delta = delta * torch.clamp(e / n.clamp_min(1e-20), max=1.0)
    return (x + delta).clamp(0, 1)


@torch.no_grad()
def keep_best(score: torch.Tensor, xa: torch.Tensor, active: torch.Tensor, best_x: torch.Tensor,
              best_score: torch.Tensor) -> None:
    """In place: where an iterate ``xa`` of the ``active`` rows scores higher, it becomes their best."""
    better = score > best_score[active]
    best_score[active] = torch.where(better, score, best_score[active])
    best_x[active] = torch.where(bshape(better, xa), xa.detach(), best_x[active])


def step_sizes(steps: int, step_max: float) -> list[float]:
    """Cosine schedule from step_max to step_max / 20 (fractions of eps)."""
    lo = step_max / 20
    return [lo + (step_max - lo) * 0.5 * (1 + math.cos(math.pi * t / max(steps - 1, 1))) for t in range(steps)]


def pgd(
    objective: Objective,
    x: torch.Tensor,
    x_start: torch.Tensor,
    eps: torch.Tensor,
    norm: str,
    steps: int,
    step_max: float,
    best_x: torch.Tensor,
    best_score: torch.Tensor,
    stop_at_positive: bool,
) -> None:
    """One run from ``x_start``; updates ``best_x``/``best_score`` in place where the score improves.

    ``objective(x_adv, rows) -> (loss to ascend, score to keep)`` for the given rows.
    With ``stop_at_positive`` a row stops once its score is > 0 (a misclassification): on the
    CPU stopped rows leave the batch at once; on an accelerator they are frozen in place and
    leave it every :data:`COMPACT_EVERY` steps, so that the step loop does not wait for the
    device (finding the rows to drop is a host sync). Both give the same iterates.
    """
    x_adv = x_start.clone()
    active = torch.arange(x.shape[0], device=x.device)
    sizes = step_sizes(steps, step_max)
    compact_every = 1 if x.device.type == "cpu" else COMPACT_EVERY
    for t in range(steps + 1):
        last = t == steps
        xa = x_adv[active].detach().requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            loss, score = objective(xa, active)
        keep_best(score, xa, active, best_x, best_score)
        if last:
            break
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        with torch.no_grad():
            xd, e = xa.detach(), eps[active]
            stepped = project(xd + bshape(e * sizes[t], xd) * ascent_direction(grad, norm), x[active], e, norm)
            if stop_at_positive:
                stopped = score > 0
                stepped = torch.where(bshape(stopped, xd), xd, stepped)  # a broken row keeps its witness
            x_adv[active] = stepped
            if stop_at_positive and (t + 1) % compact_every == 0:
                active = active[~stopped]
                if active.numel() == 0:
                    break


def search_model(model: nn.Module, x: torch.Tensor, fuse: bool) -> nn.Module:
    """The module the iterations run on: a verified fused copy of ``model`` when ``fuse``
    (:func:`rtcore.models.fused.fused_copy`), else ``model`` itself. Only for searching:
    reported numbers are always recomputed on ``model``."""
    if not fuse:
        return model
    from ..models.fused import fused_copy

    twin, _ = fused_copy(model, x)
    return twin


def check_inside(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> None:
    """Every returned perturbation must lie in the ball and in [0, 1]; anything else is a bug."""
    dist = flat_norm(x_adv - x, norm)
    tol = 1e-5 * eps + 1e-6
    if bool((dist > eps + tol).any()) or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        worst = float((dist - eps).max())
        raise RuntimeError(f"internal error: a perturbation leaves the {norm} ball by {worst:.3g} or leaves [0,1]")


def expand_eps(eps_values: tuple[float, ...], n: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(eps_values, device=device, dtype=torch.float32).repeat_interleave(n)


def monotone(eps_values: Sequence[float], better: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              values: torch.Tensor, *carried: torch.Tensor) -> None:
    """In place, along increasing eps: where the witness found at a smaller eps is better, use
    it (it lies inside every larger ball). ``values`` and ``carried`` have a leading E axis."""
    order = sorted(range(len(eps_values)), key=lambda i: eps_values[i])
    for a, b in zip(order, order[1:]):
        take = better(values[a], values[b])
        for t in (values, *carried):
            t[b][take] = t[a][take]


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def model_device(model: nn.Module, x: torch.Tensor) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return x.device


