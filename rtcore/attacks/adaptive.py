"""The adaptive plan of the end-to-end attack (``AttackSettings(plan="adaptive")``: 'standard', 'strong').

AutoAttack's gradient core spends the same budget on every point: one APGD-CE run, then one
APGD-T run per target class (the 9 most likely, at most K - 1), 100 steps each, whether a
point breaks after 3 steps or is robust by a wide margin. The adaptive plan spends it where it
can change the answer (ideas of Gao et al., ICML 2022, minimum-margin attack; Liu et al.,
CVPR 2022, A3; Melamed et al., NeurIPS 2024, MALT):

1. **screen** every point with one untargeted run (``settings.losses[0]``, cross-entropy in the
   presets; APGD's step rule; ``settings.screening_steps`` steps: half the end-to-end runs by default,
   the whole run in 'standard', which then has one target only: with a 50-step screen and one target
   it left a few points on fmnist-cnn-standard that only AutoAttack's 100-step APGD-CE broke);
2. **close survivors only**: a survivor whose margin ``z_y - max_{k != y} z_k`` kept less than
   :data:`CLOSE` of its clean value is close to a decision boundary; only those go on. On the
   bundled backbones the points that AutoAttack's further runs break were all within 1-33 % of
   their clean margin after such a screen, and most robust points far outside it;
3. **targets per point**: the wrong classes ranked by their linearised distance to the
   boundary at the point's best iterate, ``(z_y - z_t) / ||grad_x (z_y - z_t)||_q`` (q the dual
   norm; MALT's ranking), then one targeted run (``settings.target_loss``, DLR in the presets)
   of ``settings.end_to_end_steps`` steps per target from a fresh random start, nearest first,
   up to ``settings.targets`` targets; after each run the points that broke leave, and after the
   run on the nearest target only the points it brought within :data:`FOLLOW_UP` of their clean
   margin go on to further targets (A3's discarding of points an attack makes no progress on: on
   the third-party ResNet-18 this cut `strong`'s time by 37-42 % at the same robust accuracy).

``settings.restarts`` > 1 repeats 1-3 on the points still unbroken, from fresh random starts.

Every run stops a point the moment it breaks; random starts are seeded per point, as
everywhere, so results do not depend on batching.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from .geometry import flat_norm
from .search import PlanTarget, Rows, Run, SearchState

if TYPE_CHECKING:
    from .settings import AttackSettings

#: a survivor whose margin kept less than this fraction of its clean value is "close"
CLOSE = 0.3
#: ... or whose linearised distance to some class boundary is less than this many eps
LINEAR_CLOSE = 1.0
#: after the run on its nearest target, a point goes on to further targets only if its margin is below this
#: fraction of its clean value
FOLLOW_UP = 0.1
#: noise ids of the runs (seeds of their random starts): screen 2000 + r, targets 2100 + 64 r + j
SCREEN_NOISE, TARGET_NOISE = 2000, 2100


def describe_adaptive(s: AttackSettings) -> str:
    """The adaptive plan in words."""
    steps = s.end_to_end_steps
    screen = s.screening_steps
    loss = "DLR" if s.target_loss == "dlr" else "margin"
    return (f"end-to-end: adaptive ({screen}-step {s.losses[0].upper()} screen on every point; survivors within "
            f"{CLOSE:.0%} of their clean margin: up to {s.targets} targeted {loss} run(s) of {steps} steps, targets "
            f"ranked per point by linearised boundary distance; APGD step rule)")


def linearised_distance(att: PlanTarget, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(z_y - z_t) / ||grad_x (z_y - z_t)||_q`` for every class t (inf for t = y), at ``x``: the
    distance to each pairwise boundary of the model linearised at x (q = 1 for linf, 2 for l2)."""
    q_norm = "l1" if att.norm == "linf" else "l2"
    out = torch.full((x.shape[0], att.n_classes), float("inf"), device=x.device)
    for lo in range(0, x.shape[0], att.cfg.batch_size):
        xb = x[lo:lo + att.cfg.batch_size].detach().requires_grad_(True)
        yb = y[lo:lo + att.cfg.batch_size]
        with torch.enable_grad():
            z = att.search(xb)
            z_y = z.gather(1, yb[:, None]).squeeze(1)
            for t in range(att.n_classes):
                (grad,) = torch.autograd.grad((z_y - z[:, t]).sum(), xb, retain_graph=t < att.n_classes - 1)
                g = grad.flatten(1)
                dual = g.abs().sum(dim=1) if q_norm == "l1" else flat_norm(grad, "l2")
                d = (z_y - z[:, t]).detach() / dual.clamp_min(1e-12)
                out[lo:lo + xb.shape[0], t] = torch.where(yb == t, float("inf"), d)
    return out


def adaptive_plan(att: PlanTarget, rows: Rows, state: SearchState) -> Iterator[Run]:
    """The runs of the adaptive plan (module docstring), ``settings.restarts`` times with fresh random
    starts on the points still unbroken; reads ``state`` between runs."""
    cfg = att.cfg
    assert rows.y is not None
    clean = state.best.clone()  # clean margins: < 0 for the points to attack
    n_targets = min(cfg.targets, att.n_classes - 1)
    steps = cfg.end_to_end_steps
    units = (1 + n_targets) * cfg.restarts  # progress: one unit per run

    for r in range(cfg.restarts):
        yield Run(cfg.losses[0], noise=SCREEN_NOISE + r, rule="apgd", steps=cfg.screening_steps,
                  done=(r * (1 + n_targets) + 1) / units)
        alive = state.best <= 0
        if n_targets == 0 or not bool(alive.any()):
            continue
        idx = torch.nonzero(alive).flatten()
        dist = linearised_distance(att, state.best_x[idx], rows.y[idx])
        near_lin = torch.zeros_like(alive)
        near_lin[idx] = dist.amin(dim=1) < LINEAR_CLOSE * rows.eps[idx]
        order = dist.argsort(dim=1)  # nearest boundary first, the true class (inf) last
        # the nearest target for every close point; further ones only where linearly within reach
        reach = dist.gather(1, order) < LINEAR_CLOSE * rows.eps[idx, None]
        reach[:, 0] = True
        ranked = torch.full((len(rows), att.n_classes), -1, dtype=torch.long, device=rows.x.device)
        ranked[idx] = torch.where(reach, order, -1)
        chosen = near_lin | (state.best > CLOSE * clean)  # close: the survivors that go on

        def close(chosen: torch.Tensor = chosen) -> torch.Tensor:
            return chosen & (state.best <= 0)

        for j in range(n_targets):
            if j == 1:  # after the nearest target: further targets only where that run came close to breaking
                chosen &= state.best > FOLLOW_UP * clean
            near = close()
            if not bool(near.any()):
                break
            yield Run("target", noise=TARGET_NOISE + 64 * r + j, rule="apgd", steps=steps,
                      target=torch.where(near, ranked[:, j], -1), rows=near,
                      done=(r * (1 + n_targets) + 2 + j) / units)
