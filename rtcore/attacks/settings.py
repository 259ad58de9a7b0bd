"""Attack settings and the registry of named strengths ('fast', 'standard', 'strong', 'autoattack').

The strengths live in one :class:`rtcore.registry.Registry` with the four verbs of every kind:
:func:`register_strength`, :func:`list_strengths`, :func:`strength_info` and
:func:`create_strength`. :data:`STRENGTHS` (the names,
weakest first: the CLI's ``--attack`` choices, the dashboard's attack list) and :data:`PRESETS`
(name -> :class:`AttackSettings`) are live read-only views of the registry; :func:`describe`
says in words what a strength runs (the end-to-end part in the words of its plan, :mod:`.plans`,
whose registry also checks ``AttackSettings.plan``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, overload

import torch

from ..registry import Registry
from .plans import list_plans, plan_info

#: the arithmetic of an attack's search: float32, or autocast to bfloat16 / float16 (reported numbers stay float32)
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "float16")
E2E_LOSSES = ("ce", "margin")
STEP_RULES = ("cosine", "apgd")
TARGET_LOSSES = ("margin", "dlr")
#: AutoAttack versions for the end-to-end step (pyautoattack): "custom" runs APGD-CE + APGD-T,
#: "standard" is AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square)
AUTOATTACK_VERSIONS: dict[str, tuple[str, ...]] = {
    "custom": ("apgd-ce", "apgd-t"),
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
}


@dataclass(frozen=True)
class AttackSettings:
    """PGD settings: ``restarts`` for end-to-end runs, ``feature_restarts`` for the feature
    attack (its first start follows the local Jacobian, :func:`.geometry.power_start`). Step size
    follows a cosine schedule from ``step_max * eps`` down to ``step_max * eps / 20``; ``targets``
    targeted runs (most likely wrong classes first) follow the untargeted ``losses`` in every restart.

    ``autoattack``: "" (rtcore's engine) or a key of :data:`AUTOATTACK_VERSIONS`; then the
    end-to-end attack is AutoAttack (pyautoattack) and the other attacks use the PGD fields.
    ``target_loss``: the targeted runs ascend ``z_t - z_y`` ("margin") or that margin divided by
    ``z_(1) - (z_(3) + z_(4)) / 2`` ("dlr", APGD-T's scale-free targeted DLR loss; needs K >= 4,
    margin otherwise). ``step_rule``: "cosine" (the schedule above) or "apgd" (APGD's momentum and
    step halving, :mod:`.apgd`) for the end-to-end runs; the feature and loss attacks always use
    "cosine". ``plan``: how the end-to-end runs are scheduled, a name of :func:`.plans.list_plans`:
    "fixed" (every restart runs every loss and target) or "adaptive" (:mod:`.adaptive`; then
    ``targets`` is the most target classes a point gets). ``e2e_steps``: the length of the end-to-end runs
    (default ``steps``, which the feature and loss attacks use). ``screen_steps``: the length of the
    adaptive plan's screening run (default half the end-to-end runs).
    ``fuse``: run the iterations on a fused copy of the model (:func:`rtcore.models.fused.fused_copy`;
    batch norm folded, channels_last); every reported number is recomputed on the original
    model, so it is not part of :meth:`key`, and neither is ``batch_size`` (random starts are
    drawn per row). ``precision``: the arithmetic of the search's forward and backward passes, "float32"
    or an autocast dtype of :data:`PRECISIONS` (the witnesses are then found in reduced precision;
    every reported number is still recomputed in float32 on the original model)."""

    steps: int = 30
    restarts: int = 1
    feature_restarts: int = 5
    losses: tuple[str, ...] = ("ce", "margin")
    targets: int = 3
    step_max: float = 0.5
    batch_size: int = 512
    autoattack: str = ""
    fuse: bool = True
    step_rule: str = "cosine"
    target_loss: str = "margin"
    plan: str = "fixed"
    e2e_steps: int | None = None
    screen_steps: int | None = None
    precision: str = "float32"

    def __post_init__(self) -> None:
        for name in ("steps", "restarts", "feature_restarts", "targets", "batch_size", "e2e_steps", "screen_steps"):
            v = getattr(self, name)
            if v is None and name in ("e2e_steps", "screen_steps"):
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{name}={v!r} must be a whole number (for example {name}=10)")
            object.__setattr__(self, name, int(v))
        if not isinstance(self.fuse, bool):
            raise ValueError(f"fuse={self.fuse!r} must be true or false")
        if isinstance(self.step_max, bool) or not isinstance(self.step_max, numbers.Real):
            raise ValueError(f"step_max={self.step_max!r} must be a number in (0, 2] (a fraction of eps)")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1")
        if self.e2e_steps is not None and self.e2e_steps < 1:
            raise ValueError(f"e2e_steps={self.e2e_steps} must be >= 1, or None (then steps={self.steps} is used)")
        if self.screen_steps is not None and self.screen_steps < 1:
            raise ValueError(f"screen_steps={self.screen_steps} must be >= 1, or None (half the end-to-end runs)")
        if self.restarts < 1 or self.feature_restarts < 1:
            raise ValueError(f"restarts={self.restarts} and feature_restarts={self.feature_restarts} must be >= 1")
        if self.targets < 0:
            raise ValueError(f"targets={self.targets} must be >= 0")
        if isinstance(self.losses, str):
            raise TypeError(f"losses={self.losses!r} must be a tuple of names, e.g. losses=({self.losses!r},)")
        bad = [loss for loss in self.losses if loss not in E2E_LOSSES]
        if bad:
            raise ValueError(f"losses={self.losses} contains {bad}; use any of {list(E2E_LOSSES)}")
        if not (0 < self.step_max <= 2):
            raise ValueError(f"step_max={self.step_max} must be in (0, 2] (a fraction of eps)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.target_loss not in TARGET_LOSSES:
            raise ValueError(f"target_loss={self.target_loss!r} is unknown; use one of {list(TARGET_LOSSES)}")
        if self.step_rule not in STEP_RULES:
            raise ValueError(f"step_rule={self.step_rule!r} is unknown; use one of {list(STEP_RULES)}")
        if self.plan not in list_plans():
            raise ValueError(f"plan={self.plan!r} is unknown; use one of {list_plans()}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is unknown; use one of {list(PRECISIONS)}")
        if self.autoattack and self.autoattack not in AUTOATTACK_VERSIONS:
            raise ValueError(f"autoattack={self.autoattack!r} is unknown; use '' (rtcore's engine) or one of "
                             f"{list(AUTOATTACK_VERSIONS)}")

    def key(self) -> dict[str, object]:
        """What changes the results (not batch_size, not fuse), and the plan's version; a field at its
        default is left out where it was added later, so that older cache entries stay valid."""
        key: dict[str, object] = {"steps": self.steps, "restarts": self.restarts,
                                  "feature_restarts": self.feature_restarts, "losses": list(self.losses),
                                  "targets": self.targets, "step_max": self.step_max}
        if self.autoattack:
            key["autoattack"] = self.autoattack
        if self.step_rule != "cosine":
            key["step_rule"] = self.step_rule
        if self.target_loss != "margin":
            key["target_loss"] = self.target_loss
        if self.plan != "fixed":
            key["plan"] = self.plan
        if plan_info(self.plan).version > 1:  # the plan computes something else than it did
            key["plan_version"] = plan_info(self.plan).version
        if self.e2e_steps is not None:
            key["e2e_steps"] = self.e2e_steps
        if self.screen_steps is not None:
            key["screen_steps"] = self.screen_steps
        if self.precision != "float32":
            key["precision"] = self.precision
        return key

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype the search's forward and backward passes autocast to (None: float32, no autocast)."""
        return None if self.precision == "float32" else getattr(torch, self.precision)

    @property
    def end_to_end_steps(self) -> int:
        """The length of the end-to-end runs: ``e2e_steps``, or ``steps`` when it is None."""
        return self.steps if self.e2e_steps is None else self.e2e_steps

    @property
    def screening_steps(self) -> int:
        """The length of the adaptive plan's screen: ``screen_steps``, or half the end-to-end runs."""
        return max(1, round(self.end_to_end_steps / 2)) if self.screen_steps is None else self.screen_steps


@dataclass(frozen=True)
class AttackSetup:
    """How an attack runs, besides the model, the points and eps: the threat model's norm, the settings and the seed
    of its random starts. One value wherever the three travel together (the attacks, the cached stages)."""

    norm: str
    settings: AttackSettings
    seed: int = 0

    def key(self) -> dict[str, object]:
        """The cache-key parts that name it."""
        return {"norm": self.norm, "settings": self.settings.key(), "seed": self.seed}

    def but(self, **changes: Any) -> AttackSetup:
        """A copy with other values (``settings``, ``seed``: a derived attack, e.g. a sanity check's)."""
        return replace(self, **changes)


# ---------------------------------------------------------------- the registry of strengths

@dataclass(frozen=True)
class StrengthInfo:
    """A named strength: its settings and what it runs, in words."""

    name: str
    description: str
    settings: AttackSettings


_REGISTRY: Registry[StrengthInfo] = Registry("attack strength", hint="or pass AttackSettings(...)")


def register_strength(name: str, settings: AttackSettings, description: str = "", *,
                      overwrite: bool = False) -> StrengthInfo:
    """Add a named strength (``description`` defaults to :func:`describe` of the settings);
    ValueError if the name is taken, unless ``overwrite``."""
    if not isinstance(settings, AttackSettings):
        raise TypeError(f"strength {name!r}: settings must be an AttackSettings, got {type(settings).__name__}")
    return _REGISTRY.register(StrengthInfo(name=name, description=description or describe(settings),
                                           settings=settings), overwrite=overwrite)


def list_strengths() -> list[str]:
    """The strength names, in registration order (weakest first for the built-in ones)."""
    return _REGISTRY.names()


def strength_info(name: str) -> StrengthInfo:
    """The entry of a strength; ValueError naming the valid strengths if unknown."""
    return _REGISTRY.info(name)


def create_strength(strength: str | AttackSettings | None = None, **overrides: Any) -> AttackSettings:
    """The settings of a strength name (default 'standard') or of given settings, with keyword
    overrides (``None`` values are ignored, so callers can pass optional arguments through)."""
    if strength is None:
        base = strength_info("standard").settings
    elif isinstance(strength, AttackSettings):
        base = strength
    else:
        base = strength_info(strength).settings
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(AttackSettings)})
    if unknown:
        raise ValueError(f"unknown attack setting(s) {unknown}; valid: {[f.name for f in fields(AttackSettings)]}")
    return replace(base, **given) if given else base


class _StrengthNames(Sequence[str]):
    """The registered strength names as a live, read-only tuple-like view."""

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return tuple(list_strengths())[i]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(tuple(self))


class _Presets(Mapping[str, AttackSettings]):
    """The registered strengths as a live, read-only mapping name -> settings."""

    def __getitem__(self, name: str) -> AttackSettings:
        if name not in _REGISTRY:
            raise KeyError(name)
        return _REGISTRY.info(name).settings

    def __iter__(self) -> Iterator[str]:
        return iter(list_strengths())

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


#: the strength names, weakest first: the one list every front end offers (a live view of the registry)
STRENGTHS: Sequence[str] = _StrengthNames()
#: name -> settings of every strength (a live view of the registry)
PRESETS: Mapping[str, AttackSettings] = _Presets()


def describe(strength: str | AttackSettings) -> str:
    """What a strength runs, in one line (for help texts and the dashboard)."""
    s = create_strength(strength)
    feature = f"feature attack: {s.feature_restarts} start(s) of {s.steps} PGD steps"
    if s.autoattack:
        parts = " + ".join(a.upper() for a in AUTOATTACK_VERSIONS[s.autoattack])
        return f"end-to-end: AutoAttack ({s.autoattack}: {parts}; pyautoattack); {feature}"
    return f"{plan_info(s.plan).describe(s)}; {feature}"


register_strength("fast", AttackSettings(steps=10, restarts=1, feature_restarts=1, losses=("margin",), targets=0))
# end to end: the adaptive plan with a 40-step screen and one 80-step targeted run per close survivor (about a fifth
# less work than 'strong', within a point of AutoAttack's APGD-CE + APGD-T, bench/strength.py); feature and loss
# attacks: 30 steps as before
register_strength("standard", AttackSettings(steps=30, restarts=1, feature_restarts=5, losses=("ce",), targets=1,
                                             plan="adaptive", e2e_steps=80, screen_steps=40, step_rule="apgd",
                                             target_loss="dlr"))
# end to end: the adaptive plan with up to 9 targets per close survivor (as strong as AutoAttack's APGD-CE + APGD-T
# in a tenth of its time, bench/strength.py); feature attack: 10 starts of 100 steps
register_strength("strong", AttackSettings(steps=100, restarts=1, feature_restarts=10, losses=("ce",), targets=9,
                                           plan="adaptive", step_rule="apgd", target_loss="dlr"))
# AutoAttack end to end; the feature, head-subspace and loss attacks as 'strong'
register_strength("autoattack", AttackSettings(steps=100, restarts=1, feature_restarts=10, losses=("ce", "margin"),
                                               targets=9, step_rule="apgd", target_loss="dlr", autoattack="custom"))
