"""Norm geometry of the threat model ``B_p(x, eps) ∩ [0, 1]^d``: random and power starts, ascent
directions, the projection and the inside-the-ball check, and the seeded per-row noise.

Every function works on a batch of rows, each with its own eps (a tensor ``(R,)``), so that one
call can hold several eps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: ``objective(x_adv, rows) -> (loss to ascend, score to keep)`` for the given rows of a batch
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def flat_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-row norm: max |t| for linf, ||t||_2 for l2."""
    f = t.flatten(1)
    return f.abs().amax(dim=1) if norm == "linf" else f.norm(dim=1)


def bshape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-row vector ``(R,)`` viewed so that it broadcasts against ``like`` ``(R, ...)``."""
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
    """The steepest-ascent direction of unit norm: sign(grad) for linf, grad / ||grad||_2 for l2."""
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


def check_inside(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> None:
    """Every returned perturbation must lie in the ball and in [0, 1]; anything else is a bug."""
    if x_adv.numel() == 0:
        return
    dist = flat_norm(x_adv - x, norm)
    tol = 1e-5 * eps + 1e-6
    if bool((dist > eps + tol).any()) or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        worst = float((dist - eps).max())
        raise RuntimeError(f"internal error: a perturbation leaves the {norm} ball by {worst:.3g} or leaves [0,1]")
