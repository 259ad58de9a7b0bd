"""Sanity flags for an empirical robustness evaluation (RobustBench / AutoAttack practice).

A robust accuracy measured by an attack is an upper estimate; it is only worth reporting if
the attack did its job. Four checks, each cheap next to the evaluation itself, look for the
usual signs of a weak attack or of gradient masking (docs/THEORY.md, section 9):

* ``monotone_large_eps``: robust accuracy is non-increasing in eps, and the attack breaks
  (nearly) every point at a large eps (linf 0.5; l2 ``0.5 sqrt(d)``, a ball that contains that
  linf ball). A model still "robust" there has gradients that do not lead anywhere.
* ``noise_weaker``: uniform noise in the ball (a few draws) is weaker than the attack:
  noise robust accuracy >= attack robust accuracy at every eps.
* ``more_steps``: 4x the steps and at least 2 restarts lower robust accuracy by at most
  ``drop_threshold`` on a subset (else the attack had not converged).
* ``gradient_free``: Square (pyautoattack, gradient free) does not break more than
  ``drop_threshold`` of a subset that the gradient attacks left robust (else gradients mislead).

:func:`sanity_checks` returns one :class:`SanityFlag` per check: plain data, nothing printed.
The subset checks (``more_steps``, ``gradient_free``) run at one eps: the one whose robust
accuracy is closest to half the clean accuracy (the larger on ties), where a stronger attack
has the most points to find.

Every random choice (the subset, the noise draws, the seeds of the extra attacks) has its own
sub-seed :func:`rtcore._seeds.derive_seed` ``(seed, purpose)``: valid for every seed in [0, 2**63 - 1], and
distinct seeds give distinct sub-seeds (a bijection of the 63-bit range for each purpose), so no
two seeds share a subset because they agree modulo 2**32. The subset and the noise are drawn by
numpy's PCG64 seeded with the whole sub-seed (torch's CPU generator keeps only 32 bits of a seed).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from .attacks import AttackSettings, AttackSetup, ProgressFn, create_strength, run_attack
from .attacks.autoattack import AA_NORMS, autoattack_available
from .attacks.engine import batched, model_device, project
from .config import check_norm
from ._seeds import derive_seed
from .validation import check_count, check_images, check_labels, check_seed

FLAG_NAMES: tuple[str, ...] = ("monotone_large_eps", "noise_weaker", "more_steps", "gradient_free")
LARGE_EPS_LINF = 0.5
LARGE_EPS_MAX_ROBUST = 0.05  # robust accuracy allowed at the large eps
DROP_THRESHOLD = 0.02  # 2 percentage points of the subset
NOISE_DRAWS = 4
SQUARE_QUERIES = 1000
#: what a failed check means for the robust accuracy it checks
FAILED_NOTE = "the robust accuracy may be an overestimate"


@dataclass(frozen=True)
class SanityFlag:
    """One check: ``passed`` (False = the evaluation is suspect), what was measured, the
    threshold it was held to and what a failure means. ``skipped`` checks pass."""

    name: str
    passed: bool
    values: dict[str, float] = field(default_factory=dict)
    threshold: str = ""
    meaning: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else ("ok" if self.passed else "failed")


def _rng(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, purpose))


def check_sanity_subset(value: object) -> int:
    """The size of the sanity checks' subset: a positive integer (ValueError naming the value otherwise)."""
    return check_count(value, "sanity_subset")


def subset_indices(n: int, n_subset: int, seed: int) -> torch.Tensor:
    """Sorted indices of the sanity subset: all ``n`` points when ``n <= n_subset``, else a seeded sample."""
    if n <= n_subset:
        return torch.arange(n)
    picked = _rng(seed, "subset").permutation(n)[:n_subset]
    return torch.from_numpy(np.sort(picked)).long()


def summary_text(flags: Sequence[SanityFlag]) -> str:
    """``"ok"`` when every check passed, else the failed checks' names, comma-separated."""
    failed = [f.name for f in flags if not f.passed]
    return ",".join(failed) if failed else "ok"


def verdict(flags: Sequence[SanityFlag]) -> tuple[bool, str]:
    """(every check passed, one line naming the failed and the skipped checks)."""
    failed = [f.name for f in flags if not f.passed]
    skipped = [f.name for f in flags if f.skipped]
    note = f" (skipped: {', '.join(skipped)})" if skipped else ""
    if not failed:
        return True, f"all checks passed{note}"
    checks = "1 check" if len(failed) == 1 else f"{len(failed)} checks"
    return False, f"{checks} failed ({', '.join(failed)}): {FAILED_NOTE}{note}"


def with_flags(table: pd.DataFrame, flags: Mapping[str, Sequence[SanityFlag]]) -> pd.DataFrame:
    """``table`` with a ``sanity`` column per task (:func:`summary_text`, or ``not checked``); unchanged without
    flags or without a ``task`` column."""
    if not flags or "task" not in table.columns:
        return table
    text = {task: summary_text(fl) for task, fl in flags.items()}
    return table.assign(sanity=table["task"].map(lambda t: text.get(t, "not checked")))


def values_text(values: Mapping[str, float]) -> str:
    """A flag's measured values, compact: ``drop=0.05, eps=0.0157, steps=40``."""
    return ", ".join(f"{k}={v:.3g}" for k, v in values.items())


def flag_table(flags: Mapping[str, Sequence[SanityFlag]]) -> pd.DataFrame:
    """One row per task and check: ``task``, ``check``, ``status`` (ok / failed / skipped), ``measured``
    (:func:`values_text`), ``threshold`` and ``meaning`` (what a failure means)."""
    rows = [{"task": task, "check": f.name, "status": f.status, "measured": values_text(f.values),
             "threshold": f.threshold, "meaning": f.meaning} for task, fl in flags.items() for f in fl]
    return pd.DataFrame(rows, columns=["task", "check", "status", "measured", "threshold", "meaning"])


def large_eps(norm: str, x: torch.Tensor) -> float:
    """linf 0.5; l2 ``0.5 sqrt(d)``, whose ball contains the linf ball of radius 0.5."""
    d = x[0].numel()
    return LARGE_EPS_LINF if norm == "linf" else LARGE_EPS_LINF * math.sqrt(d)


def _flags_by_eps(robust_by_eps: Mapping[float, torch.Tensor], n: int) -> dict[float, torch.Tensor]:
    out = {}
    for e, r in robust_by_eps.items():
        t = torch.as_tensor(r).detach().cpu().flatten()
        if t.shape != (n,):
            raise ValueError(f"robust_by_eps[{e}] has shape {tuple(t.shape)}; give one robust flag per input "
                             f"({n}), e.g. AttackResult.robust[i] or the pipeline's per-sample 'robust' column")
        out[float(e)] = t.bool()
    if not out:
        raise ValueError("robust_by_eps is empty; give the per-sample robust flags of at least one eps")
    return out


def noise_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, draws: int,
                 seed: int, batch_size: int = 512) -> torch.Tensor:
    """Correct on x and on ``draws`` uniform random points of the ball (clipped to [0, 1])."""
    rng = _rng(seed, f"noise@{float(eps)!r}")
    ok = batched(model, x, batch_size).argmax(1) == y
    for _ in range(draws):
        if norm == "linf":
            delta = (2 * torch.from_numpy(rng.random(tuple(x.shape), dtype=np.float32)) - 1) * eps
        else:
            v = torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32))
            v = v / v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
            r = eps * torch.from_numpy(rng.random(x.shape[0])).float() ** (1.0 / x[0].numel())
            delta = v * r.view(-1, *[1] * (x.ndim - 1))
        xn = (x + delta.to(x)).clamp(0, 1)
        ok &= batched(model, xn, batch_size).argmax(1) == y
    return ok


def square_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, queries: int,
                  seed: int) -> torch.Tensor:
    """Robust flags under pyautoattack's Square attack (gradient free), recomputed here."""
    from pyautoattack.square import SquareAttack

    sq = SquareAttack(model, p_init=0.8, n_queries=queries, eps=float(eps), norm=AA_NORMS[norm], n_restarts=1,
                      seed=derive_seed(seed, "square"), verbose=False, device=x.device, resc_schedule=False)
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        xa = sq.perturb(x, y).detach()
    xa = project(xa, x, torch.full((x.shape[0],), float(eps), device=x.device), norm)
    return batched(model, xa, 512).argmax(1) == y


def _check_eps(ras: dict[float, float], clean: float) -> float:
    """The eps whose robust accuracy is closest to half the clean accuracy (larger eps on ties)."""
    live = [e for e in ras if e > 0] or list(ras)
    return min(live, key=lambda e: (round(abs(ras[e] - clean / 2), 9), -e))


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: Sequence[float], norm: str,
                  robust_by_eps: Mapping[float, torch.Tensor], settings: str | AttackSettings = "standard",
                  seed: int = 0, n_subset: int = 128, *, drop_threshold: float = DROP_THRESHOLD,
                  noise_draws: int = NOISE_DRAWS, square_queries: int = SQUARE_QUERIES,
                  progress: ProgressFn | None = None) -> list[SanityFlag]:
    """The four sanity flags of an end-to-end evaluation of classifier ``model`` on ``(x, y)``.

    ``robust_by_eps[eps]``: the evaluated attack's per-sample robust flags (N,) at each eps of
    ``eps_values``; ``settings``: that attack's strength (the stronger re-run and the large-eps
    attack derive from it). The subset checks use a seeded subset of ``n_subset`` points
    (:func:`subset_indices`). Every argument is checked before any attack runs.
    """
    norm = check_norm(norm)
    seed = check_seed(seed)
    n_subset = check_sanity_subset(n_subset)
    noise_draws = check_count(noise_draws, "noise_draws")
    square_queries = check_count(square_queries, "square_queries")
    if isinstance(drop_threshold, bool) or not isinstance(drop_threshold, numbers.Real) \
            or not 0 <= float(drop_threshold) <= 1:
        raise ValueError(f"drop_threshold={drop_threshold!r} must be a fraction in [0, 1], e.g. 0.02")
    check_images(x)
    y = check_labels(y, x.shape[0])
    cfg = create_strength(settings)
    flags = _flags_by_eps(robust_by_eps, x.shape[0])
    missing = [e for e in eps_values if float(e) not in flags]
    if missing:
        raise ValueError(f"robust_by_eps has no flags for eps {missing}; give one entry per eps of eps_values")
    report = progress or (lambda f: None)
    device = model_device(model, x)
    x, y = x.to(device=device, dtype=torch.float32), y.to(device)
    n = x.shape[0]
    clean = batched(model, x, cfg.batch_size).argmax(1) == y
    ras = {float(e): float(flags[float(e)].double().mean()) for e in eps_values}
    clean_acc = float(clean.double().mean())
    sub = subset_indices(n, n_subset, seed)
    xs, ys = x[sub.to(device)], y[sub.to(device)]
    out: list[SanityFlag] = []

    # (a) monotone in eps, and (nearly) nothing robust at a large eps
    order = sorted(ras)
    rise = max([ras[b] - ras[a] for a, b in zip(order, order[1:])] + [0.0])
    big = large_eps(norm, x)
    setup = AttackSetup(norm, cfg, seed)
    at_big = run_attack(model, xs, ys, (big,), setup.but(seed=derive_seed(seed, "large_eps")))
    ra_big = float(at_big.robust.double().mean())
    report(0.3)
    out.append(SanityFlag(
        "monotone_large_eps", passed=rise <= 1e-12 and ra_big <= LARGE_EPS_MAX_ROBUST,
        values={"max_increase": rise, "large_eps": big, "robust_acc_at_large_eps": ra_big},
        threshold=f"robust accuracy never increases with eps; <= {LARGE_EPS_MAX_ROBUST:.0%} at eps {big:.3g}",
        meaning="points the attack cannot break even with a huge budget, or a rise with eps, mean its "
                "gradients lead nowhere (masking) or it stops too early"))

    # (b) random noise in the ball is weaker than the attack
    noise = {e: float(noise_robust(model, x, y, e, norm, noise_draws, seed, cfg.batch_size).double().mean())
             for e in ras if e > 0}
    worst = min(noise, key=lambda e: noise[e] - ras[e]) if noise else None
    gap = noise[worst] - ras[worst] if worst is not None else 0.0
    out.append(SanityFlag(
        "noise_weaker", passed=gap >= 0,
        values={"eps": worst if worst is not None else 0.0, "noise_robust_acc": noise.get(worst, clean_acc),
                "attack_robust_acc": ras.get(worst, clean_acc), "gap": gap},
        threshold=f"noise robust accuracy ({noise_draws} uniform draws in the ball) >= attack robust accuracy, every eps",
        meaning="random noise breaking more points than the attack means the attack's gradients point the wrong way"))
    report(0.4)

    # (c), (d): on the subset's points that the attack left robust, at one eps
    e_c = _check_eps(ras, clean_acc)
    base = flags[e_c][sub].to(device)
    idx = torch.nonzero(base).flatten()
    base_ra = float(base.double().mean())
    stronger = replace(cfg, autoattack="", steps=4 * cfg.steps, restarts=max(2, cfg.restarts))
    broken = 0
    if idx.numel():
        res = run_attack(model, xs[idx], ys[idx], (e_c,),
                         setup.but(settings=stronger, seed=derive_seed(seed, "more_steps")))
        broken = int((~res.robust[0]).sum())
    drop = broken / len(sub)
    out.append(SanityFlag(
        "more_steps", passed=drop <= drop_threshold,
        values={"eps": e_c, "robust_acc_subset": base_ra, "robust_acc_stronger": base_ra - drop, "drop": drop,
                "steps": float(stronger.steps), "restarts": float(stronger.restarts)},
        threshold=f"4x steps and >= 2 restarts lower robust accuracy by <= {drop_threshold:.0%} ({len(sub)} points)",
        meaning="a stronger run of the same attack breaking more points means the evaluation had not converged"))
    report(0.8)

    if not autoattack_available():
        out.append(SanityFlag("gradient_free", passed=True, skipped=True, values={"eps": e_c},
                              threshold="needs pyautoattack (pip install pyautoattack==0.2.0)",
                              meaning="Square attack not run"))
    else:
        broken_sq = 0
        if idx.numel():
            broken_sq = int((~square_robust(model, xs[idx], ys[idx], e_c, norm, square_queries, seed)).sum())
        gap_sq = broken_sq / len(sub)
        out.append(SanityFlag(
            "gradient_free", passed=gap_sq <= drop_threshold,
            values={"eps": e_c, "robust_acc_subset": base_ra, "robust_acc_with_square": base_ra - gap_sq,
                    "drop": gap_sq, "queries": float(square_queries)},
            threshold=f"Square ({square_queries} queries) breaks <= {drop_threshold:.0%} of the subset "
                      f"({len(sub)} points) beyond the gradient attack",
            meaning="a gradient-free attack beating the gradient attacks means the gradients are masked"))
    report(1.0)
    return out
