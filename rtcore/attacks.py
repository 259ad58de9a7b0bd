"""One projected-gradient engine for the feature attack and the end-to-end attacks.

* :func:`feature_attack` estimates ``Delta(x; eps) = sup ||g(x') - g(x)||_2`` over
  ``B_p(x, eps) ∩ [0,1]^d`` from below (random start, restarts, best iterate per sample).
* :func:`attack` estimates end-to-end robustness of a classifier: a point is broken when
  any iterate of any run is misclassified. Runs: cross-entropy and margin losses
  (untargeted), then targeted margin runs towards the most likely wrong classes.

Both take one eps (results of shape ``(N,)``) or a list of E eps (results ``(E, N)``),
computed in one batched sweep. A witness found at a smaller eps lies inside every larger
ball, so results are made monotone in eps. Every returned perturbation is verified
(inside the ball, inside [0, 1]) and the reported numbers are recomputed from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_eps, check_eval_mode, check_features, check_images, check_labels, check_norm

ProgressFn = Callable[[float], None]
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
E2E_LOSSES = ("ce", "margin")


@dataclass(frozen=True)
class AttackSettings:
    """PGD settings: ``restarts`` for end-to-end runs, ``feature_restarts`` for the feature
    attack (its first start follows the local Jacobian, see :func:`_power_start`). Step size follows a cosine schedule from ``step_max * eps`` down to
    ``step_max * eps / 20``; ``targets`` targeted runs (most likely wrong classes first)
    follow the untargeted ``losses`` in every restart."""

    steps: int = 30
    restarts: int = 1
    feature_restarts: int = 5
    losses: tuple[str, ...] = ("ce", "margin")
    targets: int = 3
    step_max: float = 0.5
    batch_size: int = 512

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        if self.restarts < 1 or self.feature_restarts < 1:
            raise ValueError(f"restarts={self.restarts} and feature_restarts={self.feature_restarts} must be >= 1")
        if self.targets < 0:
            raise ValueError(f"targets={self.targets} must be >= 0")
        bad = [loss for loss in self.losses if loss not in E2E_LOSSES]
        if bad:
            raise ValueError(f"losses={self.losses} contains {bad}; use any of {list(E2E_LOSSES)}")
        if not (0 < self.step_max <= 2):
            raise ValueError(f"step_max={self.step_max} must be in (0, 2] (a fraction of eps)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")

    def key(self) -> dict[str, object]:
        """What changes the results (not batch_size: random starts are drawn per row)."""
        return {"steps": self.steps, "restarts": self.restarts, "feature_restarts": self.feature_restarts,
                "losses": list(self.losses), "targets": self.targets, "step_max": self.step_max}


PRESETS: dict[str, AttackSettings] = {
    "fast": AttackSettings(steps=10, restarts=1, feature_restarts=1, losses=("margin",), targets=0),
    "standard": AttackSettings(steps=30, restarts=1, feature_restarts=5, losses=("ce", "margin"), targets=3),
    "strong": AttackSettings(steps=100, restarts=3, feature_restarts=10, losses=("ce", "margin"), targets=9),
}


def resolve_settings(strength: str | AttackSettings | None = None, **overrides: int) -> AttackSettings:
    """A preset name ('fast', 'standard', 'strong') or settings, with keyword overrides."""
    if strength is None:
        base = PRESETS["standard"]
    elif isinstance(strength, AttackSettings):
        base = strength
    elif strength in PRESETS:
        base = PRESETS[strength]
    else:
        raise ValueError(f"attack strength {strength!r} is unknown; use one of {list(PRESETS)} or AttackSettings(...)")
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **given) if given else base


@dataclass(frozen=True)
class FeatureAttackResult:
    """``delta[e, i] = ||g(x_adv[e, i]) - g(x[i])||_2`` (leading E axis only for a list of eps)."""

    eps: float | tuple[float, ...]
    norm: str
    delta: torch.Tensor
    x_adv: torch.Tensor
    clean_features: torch.Tensor
    settings: AttackSettings


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


# ---------------------------------------------------------------- norm geometry

def _flat_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    f = t.flatten(1)
    return f.abs().amax(dim=1) if norm == "linf" else f.norm(dim=1)


def _bshape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def _row_noise(x: torch.Tensor, eps: torch.Tensor, sample: torch.Tensor, seed: int, run: int, normal: bool) -> torch.Tensor:
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


def _random_start(x: torch.Tensor, eps: torch.Tensor, norm: str, noise: torch.Tensor) -> torch.Tensor:
    """A random point of the ball (never x itself, where the feature-loss gradient is 0).

    ``noise`` is uniform in [0, 1) for linf and standard normal for l2.
    """
    e = _bshape(eps, x)
    if norm == "linf":
        delta = (2 * noise - 1) * e
    else:
        n = noise.flatten(1)
        r = 0.5 + 0.5 * torch.sigmoid(n[:, 0])  # radius in (0.5, 1) eps, from the same row noise
        delta = noise / _bshape(n.norm(dim=1).clamp_min(1e-12), x) * e * _bshape(r, x)
    return (x + delta).clamp(0, 1)


def _power_start(objective: Objective, x: torch.Tensor, eps: torch.Tensor, norm: str, noise: torch.Tensor,
                 iters: int = 5) -> torch.Tensor:
    """A start along the dominant direction of the local Jacobian J of g.

    At a small perturbation v the gradient of ``0.5 ||g(x+v) - g(x)||^2`` is ``J^T J v``, so a
    few normalised gradient steps are power iterations (from standard-normal ``noise``). The
    start is ``x + eps * sign(v)`` (linf) or ``x + eps * v / ||v||`` (l2); coordinates with
    zero gradient keep the sign of the initial noise.
    """
    rows = torch.arange(x.shape[0], device=x.device)
    v = noise / _bshape(_flat_norm(noise, "l2").clamp_min(1e-20), noise)
    r = _bshape(eps, x) * 1e-2
    for _ in range(iters):
        xa = (x + r * v).clamp(0, 1).detach().requires_grad_(True)
        loss, _ = objective(xa, rows)
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        n = _bshape(_flat_norm(grad, "l2"), grad)
        v = torch.where(n > 0, grad / n.clamp_min(1e-30), v)
    if norm == "linf":
        v = torch.where(v != 0, v.sign(), noise.sign())
    else:
        v = v / _bshape(_flat_norm(v, "l2").clamp_min(1e-20), v)
    return (x + _bshape(eps, x) * v).clamp(0, 1)


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / _bshape(_flat_norm(grad, "l2").clamp_min(1e-20), grad)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Into the eps-ball around x, then into [0, 1] (clamping only shrinks the perturbation)."""
    e = _bshape(eps, x)
    delta = x_adv - x
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, e), -e)
    else:
        n = _bshape(_flat_norm(delta, "l2"), x)
        delta = delta * torch.clamp(e / n.clamp_min(1e-20), max=1.0)
    return (x + delta).clamp(0, 1)


def _step_sizes(steps: int, step_max: float) -> list[float]:
    """Cosine schedule from step_max to step_max / 20 (fractions of eps)."""
    lo = step_max / 20
    return [lo + (step_max - lo) * 0.5 * (1 + math.cos(math.pi * t / max(steps - 1, 1))) for t in range(steps)]


def _pgd(
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
    With ``stop_at_positive`` a row stops once its score is > 0 (a misclassification).
    """
    x_adv = x_start.clone()
    active = torch.arange(x.shape[0], device=x.device)
    sizes = _step_sizes(steps, step_max)
    for t in range(steps + 1):
        last = t == steps
        xa = x_adv[active].detach().requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            loss, score = objective(xa, active)
        with torch.no_grad():
            better = score > best_score[active]
            rows = active[better]
            best_score[rows] = score[better]
            best_x[rows] = xa.detach()[better]
        if last:
            break
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        with torch.no_grad():
            keep = ~(score > 0) if stop_at_positive else torch.ones_like(better)
            active, xa_k, grad_k = active[keep], xa.detach()[keep], grad[keep]
            if active.numel() == 0:
                break
            e = eps[active]
            stepped = xa_k + _bshape(e * sizes[t], xa_k) * _ascent_direction(grad_k, norm)
            x_adv[active] = _project(stepped, x[active], e, norm)


def _check_inside(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> None:
    """Every returned perturbation must lie in the ball and in [0, 1]; anything else is a bug."""
    dist = _flat_norm(x_adv - x, norm)
    tol = 1e-5 * eps + 1e-6
    if bool((dist > eps + tol).any()) or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        worst = float((dist - eps).max())
        raise RuntimeError(f"internal error: a perturbation leaves the {norm} ball by {worst:.3g} or leaves [0,1]")


def _rows(eps_values: tuple[float, ...], n: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(eps_values, device=device, dtype=torch.float32).repeat_interleave(n)


def _monotone(eps_values: Sequence[float], better: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              values: torch.Tensor, *carried: torch.Tensor) -> None:
    """In place, along increasing eps: where the witness found at a smaller eps is better, use
    it (it lies inside every larger ball). ``values`` and ``carried`` have a leading E axis."""
    order = sorted(range(len(eps_values)), key=lambda i: eps_values[i])
    for a, b in zip(order, order[1:]):
        take = better(values[a], values[b])
        for t in (values, *carried):
            t[b][take] = t[a][take]


@torch.no_grad()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _model_device(model: nn.Module, x: torch.Tensor) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return x.device


def feature_attack(
    backbone: nn.Module | str,
    x: torch.Tensor,
    eps: float | Sequence[float],
    *,
    norm: str = "linf",
    steps: int | None = None,
    restarts: int | None = None,
    seed: int = 0,
    settings: str | AttackSettings | None = None,
    progress: ProgressFn | None = None,
) -> FeatureAttackResult:
    """Maximise ``||g(x') - g(x)||_2`` over ``x'`` in ``B_p(x, eps) ∩ [0,1]^d``.

    Returns the best value per sample over all iterates and restarts (worst case per
    sample, never an average). Delta is a lower estimate of the supremum.
    """
    from .backbones import create_backbone

    g = create_backbone(backbone) if isinstance(backbone, str) else backbone
    check_norm(norm)
    eps_values, scalar = check_eps(eps)
    check_images(x)
    check_eval_mode(g, "backbone")
    cfg = resolve_settings(settings, steps=steps, feature_restarts=restarts)
    device = _model_device(g, x)
    x = x.to(device=device, dtype=torch.float32)
    n, n_eps = x.shape[0], len(eps_values)
    f0 = check_features(_batched(g, x, cfg.batch_size), "backbone features")
    eps_rows = _rows(eps_values, n, device)
    x_rows = x.repeat(n_eps, 1, 1, 1)
    best_x = x_rows.clone()
    best = torch.zeros(n * n_eps, device=device)
    live = torch.nonzero(eps_rows > 0).flatten()
    total = max(live.numel() * cfg.feature_restarts, 1)
    done = 0
    for r in range(cfg.feature_restarts):
        for lo in range(0, live.numel(), cfg.batch_size):
            idx = live[lo:lo + cfg.batch_size]
            f_ref = f0[idx % n]

            def objective(xa: torch.Tensor, rows: torch.Tensor, f_ref: torch.Tensor = f_ref) -> tuple[torch.Tensor, torch.Tensor]:
                d = g(xa) - f_ref[rows]
                sq = (d * d).sum(dim=1)
                return 0.5 * sq, sq.detach().sqrt()

            bx, bs, xs, es = best_x[idx], best[idx], x_rows[idx], eps_rows[idx]
            if r == 0:
                start = _power_start(objective, xs, es, norm, _row_noise(xs, es, idx % n, seed, -1, True))
            else:
                start = _random_start(xs, es, norm, _row_noise(xs, es, idx % n, seed, r, norm == "l2"))
            _pgd(objective, xs, start, es, norm, cfg.steps, cfg.step_max, bx, bs, stop_at_positive=False)
            best_x[idx], best[idx] = bx, bs
            done += idx.numel()
            if progress is not None:
                progress(done / total)
    _check_inside(best_x, x_rows, eps_rows, norm)
    delta = (_batched(g, best_x, cfg.batch_size) - f0.repeat(n_eps, 1)).norm(dim=1)
    delta[eps_rows == 0] = 0.0
    delta, best_x = delta.view(n_eps, n), best_x.view(n_eps, *x.shape)
    _monotone(eps_values, lambda a, b: a > b, delta, best_x)
    if progress is not None:
        progress(1.0)
    return FeatureAttackResult(
        eps=eps_values[0] if scalar else eps_values, norm=norm,
        delta=(delta[0] if scalar else delta).cpu(), x_adv=(best_x[0] if scalar else best_x).cpu(),
        clean_features=f0.cpu(), settings=cfg,
    )


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
    device = _model_device(model, x)
    x, y = x.to(device=device, dtype=torch.float32), y.to(device)
    n, n_eps = x.shape[0], len(eps_values)
    clean_logits = _batched(model, x, cfg.batch_size)
    n_classes = clean_logits.shape[1]
    if int(y.max()) >= n_classes:
        raise ValueError(f"label {int(y.max())} is out of range for a model with {n_classes} outputs")
    clean_correct = clean_logits.argmax(dim=1) == y
    ranked = clean_logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    n_targets = min(cfg.targets, n_classes - 1)
    eps_rows = _rows(eps_values, n, device)
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
                noise = _row_noise(xs, es, idx % n, seed, 1000 + r * 64 + k, norm == "l2")
                _pgd(objective, xs, _random_start(xs, es, norm, noise), es, norm, cfg.steps, cfg.step_max, bx, bs,
                     stop_at_positive=True)
                best_x[idx], best[idx] = bx, bs
            if progress is not None:
                progress((r * len(runs) + k + 1) / total)
    # misclassified clean points: x itself is the witness
    wrong = ~clean_correct.repeat(n_eps)
    best_x[wrong] = x_rows[wrong]
    _check_inside(best_x, x_rows, eps_rows, norm)
    logits_adv = _batched(model, best_x, cfg.batch_size)
    robust = (logits_adv.argmax(dim=1) == y_rows) & clean_correct.repeat(n_eps)
    robust, best_x = robust.view(n_eps, n), best_x.view(n_eps, *x.shape)
    logits_adv = logits_adv.view(n_eps, n, -1)
    _monotone(eps_values, lambda a, b: ~a & b, robust, best_x, logits_adv)
    if progress is not None:
        progress(1.0)
    sq = (lambda t: t[0]) if scalar else (lambda t: t)
    return AttackResult(
        eps=eps_values[0] if scalar else eps_values, norm=norm, robust=sq(robust).cpu(),
        x_adv=sq(best_x).cpu(), logits_adv=sq(logits_adv).cpu(), clean_correct=clean_correct.cpu(), settings=cfg,
    )
