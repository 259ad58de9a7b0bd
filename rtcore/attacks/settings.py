"""Attack settings and the named strengths ('fast', 'standard', 'strong', 'autoattack').

:data:`STRENGTHS` is the one list of strength names (the CLI's ``--attack`` choices, the
dashboard's attack list, ``run_evaluation(attack=...)``); :data:`PRESETS` maps each to its
:class:`AttackSettings`; :func:`describe` says in words what a strength runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    attack (its first start follows the local Jacobian, see :func:`_power_start`). Step size follows a cosine schedule from ``step_max * eps`` down to
    ``step_max * eps / 20``; ``targets`` targeted runs (most likely wrong classes first)
    follow the untargeted ``losses`` in every restart.

    ``autoattack``: "" (the PGD engine) or a key of :data:`AUTOATTACK_VERSIONS`; then the
    end-to-end attack is AutoAttack (pyautoattack) and the other attacks use the PGD fields.
    ``target_loss``: the targeted runs ascend ``z_t - z_y`` ("margin") or that margin divided by
    ``z_(1) - (z_(3) + z_(4)) / 2`` ("dlr", APGD-T's scale-free targeted DLR loss; needs K >= 4,
    margin otherwise). ``step_rule``: "cosine" (the schedule above) or "apgd" (APGD's momentum and step halving,
    :mod:`.apgd`) for the end-to-end runs; the feature and loss attacks always use "cosine".
    ``fuse``: run the iterations on a fused copy of the model (:func:`rtcore.models.fused.fused_copy`;
    batch norm folded, channels_last); every reported number is recomputed on the original
    model, so it is not part of :meth:`key`."""

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
        if self.target_loss not in TARGET_LOSSES:
            raise ValueError(f"target_loss={self.target_loss!r} is unknown; use one of {list(TARGET_LOSSES)}")
        if self.step_rule not in STEP_RULES:
            raise ValueError(f"step_rule={self.step_rule!r} is unknown; use one of {list(STEP_RULES)}")
        if self.autoattack and self.autoattack not in AUTOATTACK_VERSIONS:
            raise ValueError(f"autoattack={self.autoattack!r} is unknown; use '' (PGD) or one of "
                             f"{list(AUTOATTACK_VERSIONS)}")

    def key(self) -> dict[str, object]:
        """What changes the results (not batch_size: random starts are drawn per row)."""
        key: dict[str, object] = {"steps": self.steps, "restarts": self.restarts,
                                  "feature_restarts": self.feature_restarts, "losses": list(self.losses),
                                  "targets": self.targets, "step_max": self.step_max}
        if self.autoattack:
            key["autoattack"] = self.autoattack
        if self.step_rule != "cosine":
            key["step_rule"] = self.step_rule
        if self.target_loss != "margin":
            key["target_loss"] = self.target_loss
        return key


PRESETS: dict[str, AttackSettings] = {
    "fast": AttackSettings(steps=10, restarts=1, feature_restarts=1, losses=("margin",), targets=0),
    "standard": AttackSettings(steps=30, restarts=1, feature_restarts=5, losses=("ce", "margin"), targets=3),
    # AutoAttack's APGD-CE + APGD-T recipe in rtcore's engine (APGD's step rule, a CE run, targeted DLR
    # runs against the 9 most likely wrong classes) plus one margin run: without it AutoAttack broke
    # 0.6 points more on one of 8 settings (scripts/strong_vs_autoattack.py; numbers in the README)
    "strong": AttackSettings(steps=100, restarts=1, feature_restarts=10, losses=("ce", "margin"), targets=9,
                             step_rule="apgd", target_loss="dlr"),
}
# AutoAttack end to end; the feature, head-subspace and loss attacks use the 'strong' PGD settings
PRESETS["autoattack"] = replace(PRESETS["strong"], autoattack="custom")

#: the strength names, weakest first: the one list every front end offers
STRENGTHS: tuple[str, ...] = tuple(PRESETS)


def describe(strength: str | AttackSettings) -> str:
    """What a strength runs, in one line (for help texts and the dashboard)."""
    s = resolve_settings(strength)
    pgd = f"{s.steps} PGD steps"
    feature = f"feature attack: {s.feature_restarts} start(s) of {pgd}"
    if s.autoattack:
        parts = " + ".join(a.upper() for a in AUTOATTACK_VERSIONS[s.autoattack])
        return f"end-to-end: AutoAttack ({s.autoattack}: {parts}; pyautoattack); {feature}"
    runs = " + ".join([*s.losses, *([f"{s.targets} targeted"] if s.targets else [])])
    rule = (", APGD step rule" if s.step_rule == "apgd" else "") + (", targeted DLR loss" if s.target_loss == "dlr" else "")
    return f"{pgd}; end-to-end: {s.restarts} restart(s) x ({runs}){rule}; {feature}"


def resolve_settings(strength: str | AttackSettings | None = None, **overrides: int) -> AttackSettings:
    """A strength name (one of :data:`STRENGTHS`) or settings, with keyword overrides."""
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


