"""Attack settings and the named presets ('fast', 'standard', 'strong')."""

from __future__ import annotations

from dataclasses import dataclass, replace

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


