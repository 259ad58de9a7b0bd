"""The adaptive plan of the end-to-end attack (``AttackSettings(plan="adaptive")``: 'standard', 'strong').

AutoAttack's gradient core spends the same budget on every point: one APGD-CE run, then one
APGD-T run per target class (the 9 most likely, at most K - 1), 100 steps each, whether a
point breaks after 3 steps or is robust by a wide margin. The adaptive plan spends it where it
can change the answer (ideas of Gao et al., ICML 2022, minimum-margin attack; Liu et al.,
CVPR 2022, A3; Melamed et al., NeurIPS 2024, MALT):

1. **screen** every point with one untargeted run (``settings.losses[0]``, cross-entropy in the
   presets; APGD's step rule; ``settings.screening_steps`` steps, half the end-to-end runs by default);
   a point whose margin still holds more than 60 % of its clean value after a fifth of the screen, or
   more than 45 % after two fifths (:data:`SCREEN_GIVE_UP`), is left there and is done (A3's
   discarding, Liu et al., CVPR 2022: on the bundled CNNs and the ResNet-18 every point a screen broke
   later held at most 56 % and 34 % of its margin at those steps, every point a later run or
   AutoAttack broke at most 34 % and 21 %);
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
   margin go on to further targets (on the third-party ResNet-18 this cut `strong`'s time by
   37-42 % at the same robust accuracy); a targeted run that leaves more than 35 % of the clean
   margin after a tenth of its steps, or more than 20 % after three tenths (:data:`TARGET_GIVE_UP`),
   ends there (the targeted runs that broke a point had at most 20 % and 12 % left at those steps,
   most of the others 45-55 %).

``settings.restarts`` > 1 repeats 1-3 on the points still unbroken, from fresh random starts.

Every run stops a point the moment it breaks; random starts are seeded per point, as
everywhere, so results do not depend on batching. The further targets form one stage
(:class:`.search.Stage`): the loop may start them early where a chunk has room, with the result
of running them one after another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .geometry import flat_norm
from .search import PlanTarget, Probe, RowPlan, RowView, Run, Stage

if TYPE_CHECKING:
    from .settings import AttackSettings

#: a survivor whose margin kept less than this fraction of its clean value is "close"
CLOSE = 0.3
#: ... or whose linearised distance to some class boundary is less than this many eps
LINEAR_CLOSE = 1.0
#: after the run on its nearest target, a point goes on to further targets only if its margin is below this
#: fraction of its clean value
FOLLOW_UP = 0.1
#: (fraction of its steps, fraction of the clean margin): after a fifth of its steps the screen gives up on a point
#: whose margin kept more than 60 % of its clean value, after two fifths on one that kept more than 45 %; the point
#: is done (above the most that any point later broken kept there: 56 % and 34 % on the bundled CNNs and the
#: ResNet-18; at 70 % and 60 %, `strong` took 14-18 % more CPU time for the same robust accuracy)
SCREEN_GIVE_UP = ((0.2, 0.6), (0.4, 0.45))
#: ... a targeted run gives up after a tenth of its steps with more than 35 % left, after three tenths with 20 %
TARGET_GIVE_UP = ((0.1, 0.35), (0.3, 0.2))
#: noise ids of the runs (seeds of their random starts): screen 2000 + r, targets 2100 + 64 r + j
SCREEN_NOISE, TARGET_NOISE = 2000, 2100
#: bumped whenever the plan computes something else (it enters AttackSettings.key(), so every cache key)
VERSION = 3


def describe_adaptive(s: AttackSettings) -> str:
    """The adaptive plan in words."""
    steps = s.end_to_end_steps
    screen = s.screening_steps
    loss = "DLR" if s.target_loss == "dlr" else "margin"
    return (f"end-to-end: adaptive ({screen}-step {s.losses[0].upper()} screen on every point, left early where the "
            f"margin holds; survivors within {CLOSE:.0%} of their clean margin: up to {s.targets} targeted {loss} "
            f"run(s) of {steps} steps, targets ranked per point by linearised boundary distance; APGD step rule)")


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


def give_up(steps: int, rules: tuple[tuple[float, float], ...], clean: torch.Tensor) -> tuple[tuple[int, float], ...]:
    """A run's ``give_up`` (:class:`.search.Run`): per rule ``(at, kept)``, after ``at`` of its ``steps`` if its
    best score is still below ``kept`` times the clean margin (a negative score: more than that share kept)."""
    out = ((round(at * steps), float(kept * clean)) for at, kept in rules)
    return tuple((k, floor) for k, floor in out if 0 < k < steps)


def adaptive_plan(att: PlanTarget, row: RowView) -> RowPlan:
    """The adaptive plan of one row (module docstring), ``settings.restarts`` times with fresh random
    starts while the point stands; reads ``row.best`` between runs."""
    cfg = att.cfg
    clean = row.best  # the clean margin: < 0 for the points to attack
    n_targets = min(cfg.targets, att.n_classes - 1)
    steps = cfg.end_to_end_steps
    units = (1 + n_targets) * cfg.restarts  # progress: one unit per run
    screen_give_up = give_up(cfg.screening_steps, SCREEN_GIVE_UP, clean)
    for r in range(cfg.restarts):
        yield Run(cfg.losses[0], noise=SCREEN_NOISE + r, rule="apgd", steps=cfg.screening_steps,
                  done=(r * (1 + n_targets) + 1) / units, give_up=screen_give_up)
        if n_targets == 0 or any(bool(row.best < floor) for _, floor in screen_give_up):
            continue  # no targets, or the screen gave up: far from any boundary
        dist: torch.Tensor = yield Probe(linearised_distance)
        order = dist.argsort(stable=True)  # nearest boundary first, the true class (inf) last
        # the nearest target for every close point; further ones only where linearly within reach
        reach = dist[order] < LINEAR_CLOSE * row.eps
        reach[0] = True
        ranked = order[reach].tolist()  # reach holds for a prefix of the order
        if not bool(dist.amin() < LINEAR_CLOSE * row.eps) and not bool(row.best > CLOSE * clean):
            continue  # not close: the survivors that go on are close
        # the nearest target first; further ones only where its run came close to breaking
        yield Stage(tuple(Run("target", noise=TARGET_NOISE + 64 * r + j, rule="apgd", steps=steps, target=t,
                              done=(r * (1 + n_targets) + 2 + j) / units, give_up=give_up(steps, TARGET_GIVE_UP, clean))
                          for j, t in enumerate(ranked[:n_targets])),
                    go_on=lambda best, clean=clean: bool(best > FOLLOW_UP * clean))
