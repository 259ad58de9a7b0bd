"""An estimate before every long run: how many units, how many image-steps, how long on this device.

An *image-step* is one forward and backward pass of one image through the backbone (a forward pass
alone counts a third). :func:`unit_steps` counts a unit's image-steps from its spec and attack
settings; :func:`calibrate` measures the seconds of one image-step on the device (a few chunks of
random images through the backbone, the same fixed-size chunks every attack runs,
:mod:`rtcore.numerics`); :func:`estimate` multiplies them.

What is counted, per task and eps (``n`` test points): the feature attack, ``feature_restarts`` runs of
``steps`` steps on every point; the end-to-end attack, every run of its plan on every point (the
adaptive plan: the screen on every point, then targeted runs on the share of points a screen leaves
close to a boundary, :data:`SURVIVORS`, most of which stop after the nearest target,
:data:`FURTHER`); the head-subspace attack as the feature attack; the loss attack, ``restarts`` runs;
the fit, a forward pass over the training split (plus the robust probe's feature attack on
:data:`~rtcore.cached.RADIUS_POINTS` training points, plus fine-tuning's epochs). End-to-end runs stop
a point once it is broken, so the count is an upper bound there; units read from the cache cost
nothing, so on a warm cache the run takes less.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch

from ..attacks import AttackSettings
from ..data import Task, create_task
from ..errors import RtcoreError
from ..models import Backbone
from ..models.ref import BackboneRef
from ..numerics import chunk_rows, fixed_threads, rows_per_chunk
from ..cached import RADIUS_POINTS
from ..transfer.recipe import transfer_info
from .plan import Unit, plan
from .resources import spec_device
from .spec import EvalSpec

__all__ = ["FORWARD", "Estimate", "calibrate", "estimate", "estimate_specs", "unit_steps"]

#: a forward pass alone, in image-steps
FORWARD = 1 / 3
#: the adaptive plan: the share of points its screen leaves close to a boundary (they get targeted runs)
SURVIVORS = 0.3
#: ... and the share of those that go on past the nearest target
FURTHER = 0.1
#: the attack loop's own work (projection, bookkeeping) on top of the passes through the backbone
LOOP_OVERHEAD = 1.15


@dataclass(frozen=True)
class Estimate:
    """``units`` of work, ``image_steps`` in all, ``seconds_per_step`` measured on ``device``, and
    ``estimated_seconds`` (assuming nothing is cached)."""

    units: int
    image_steps: int
    seconds_per_step: float
    estimated_seconds: float
    device: str
    #: units left out of the estimate, with why (their backbone or task could not be loaded here)
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def e2e_steps(cfg: AttackSettings) -> float:
    """Image-steps of the end-to-end attack per point and eps."""
    if cfg.autoattack:
        return 100.0 + 9 * 100.0  # APGD-CE, then APGD-T on (at most) 9 target classes
    runs = cfg.end_to_end_steps + 1
    if cfg.plan == "adaptive":
        targeted = SURVIVORS * (1 + FURTHER * max(cfg.targets - 1, 0)) * runs if cfg.targets else 0.0
        return cfg.screening_steps + 1 + targeted
    return cfg.restarts * (len(cfg.losses) + cfg.targets) * runs


def unit_steps(unit: Unit, n: int, n_train: int, cfg: AttackSettings) -> float:
    """Image-steps of one unit of ``unit.spec`` with ``n`` test points and ``n_train`` training images."""
    spec = unit.spec
    eps = [e for e in unit.eps if e > 0]
    feature = cfg.feature_restarts * (cfg.steps + 1)
    attack = len(eps) * n * (feature + e2e_steps(cfg))
    if unit.stage == "fit":
        fit = (n_train + n) * FORWARD
        if spec.probe == "robust":
            fit += min(RADIUS_POINTS, n_train) * feature
        if transfer_info(spec.transfer).trains != "none":
            fit += spec.finetune.epochs * n_train
        return fit + attack
    if unit.stage == "attack":
        return attack
    if unit.stage == "head_loss":
        return len(eps) * n * ((feature if spec.head_attack else 0) + (cfg.restarts * (cfg.steps + 1)
                                                                         if spec.loss_attack else 0))
    if unit.stage == "sanity":  # a 4x longer re-run on a subset, a large-eps run, noise, Square's queries
        sub = min(spec.sanity_subset, n)
        return len(eps) * n * e2e_steps(cfg) + sub * (4 * e2e_steps(cfg) + 1000 * FORWARD)
    raise ValueError(f"unit stage {unit.stage!r} is unknown")


def calibrate(g: Backbone, shape: Sequence[int], repeats: int = 3) -> float:
    """Seconds per image-step of ``g`` on its device: the fastest of ``repeats`` timed forward and backward
    passes of one chunk of random images of ``shape`` (C, H, W), after one untimed pass."""
    rows = chunk_rows(g.device)
    x = torch.rand((rows, *shape), device=g.device)
    best = float("inf")
    with fixed_threads():
        for i in range(repeats + 1):
            xi = x.clone().requires_grad_(True)
            if g.device.type == "cuda":
                torch.cuda.synchronize(g.device)
            t0 = time.perf_counter()
            g(xi).square().sum().backward()
            if g.device.type == "cuda":
                torch.cuda.synchronize(g.device)
            if i:
                best = min(best, time.perf_counter() - t0)
    return best / rows


def estimate(units: Sequence[Unit], backbone: Callable[[Unit], Backbone], task: Callable[[Unit], Task],
             seconds_per_step: Callable[[Backbone, tuple[int, ...]], float] = calibrate) -> Estimate:
    """The estimate of ``units``: each unit's image-steps (its task's sizes from ``task(unit)``) times the
    seconds per image-step of its backbone (``backbone(unit)``), calibrated once per backbone, input shape and
    chunk."""
    rates: dict[tuple[int, tuple[int, ...], int | None], float] = {}
    steps_total, seconds, device = 0.0, 0.0, "cpu"
    for unit in units:
        t, g = task(unit), backbone(unit)
        shape = tuple(int(s) for s in t.x_test.shape[1:])
        batch = unit.spec.batch_size  # a batch below the chunk computes in chunks of its size (another rate)
        rows = batch if isinstance(batch, int) and batch < chunk_rows(g.device) else None
        key = (id(g), shape, rows)
        if key not in rates:
            with rows_per_chunk(rows):
                rates[key] = seconds_per_step(g, shape)
        n = unit.spec.n_for(int(t.x_test.shape[0]))
        s = unit_steps(unit, n, int(t.x_train.shape[0]), unit.spec.settings())
        steps_total += s
        seconds += s * rates[key] * LOOP_OVERHEAD
        device = str(g.device)
    per = seconds / steps_total if steps_total else (next(iter(rates.values())) if rates else 0.0)
    return Estimate(units=len(units), image_steps=int(round(steps_total)), seconds_per_step=per,
                    estimated_seconds=seconds, device=device)


def estimate_specs(specs: Sequence[EvalSpec], *, cache_dir: str | None = None, use_cache: bool = True,
                   seconds_per_step: Callable[[Backbone, tuple[int, ...]], float] = calibrate) -> Estimate:
    """The estimate of every unit of ``specs`` (a sweep's), creating each distinct backbone and task once."""
    backbones: dict[tuple[BackboneRef, str], Backbone] = {}
    tasks: dict[str, Task] = {}

    def backbone(unit: Unit) -> Backbone:
        key = (unit.spec.backbone, unit.spec.device)
        if key not in backbones:
            backbones[key] = unit.spec.backbone.create(spec_device(unit.spec.device), cache_dir=cache_dir,
                                                       use_cache=use_cache)
        return backbones[key]

    def task(unit: Unit) -> Task:
        if unit.task not in tasks:
            tasks[unit.task] = create_task(unit.task, download=unit.spec.download, cache_dir=cache_dir,
                                           use_cache=use_cache)
        return tasks[unit.task]

    ok, skipped = [], []
    for s in specs:
        try:
            backbone(plan(s)[0])
            task(plan(s)[0])
        except (ValueError, RtcoreError, OSError) as e:  # that unit will fail and say why; the others run
            skipped.append(f"{s.backbone.display} · {s.tasks[0]}: {e}")
            continue
        ok.append(s)
    est = estimate([u for s in ok for u in plan(s)], backbone, task, seconds_per_step)
    return replace(est, units=len(ok), skipped=tuple(skipped))
