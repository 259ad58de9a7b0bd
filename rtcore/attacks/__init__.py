"""Attacks: one projected-gradient engine, the feature attack and the end-to-end attacks.

* :mod:`.settings`: :class:`AttackSettings` and the presets;
* :mod:`.engine`: norm geometry, one PGD run, seeded per-row noise, monotone-in-eps fix-up;
* :mod:`.feature`: :func:`feature_attack`, ``Delta(x; eps) = sup ||g(x') - g(x)||_2`` from below;
* :mod:`.end_to_end`: :func:`attack` on a classifier (CE, margin and targeted margin runs;
  eps in increasing order, broken points not attacked again);
* :mod:`.autoattack`: AutoAttack (pyautoattack) as the end-to-end search of the 'autoattack' strength.

The iterations run on a verified fused copy of the model (:mod:`rtcore.models.fused`); every
reported number is recomputed on the original model.

Both attacks take one eps (results ``(N,)``) or a list of E eps (results ``(E, N)``) computed
in one batched sweep; results are monotone in eps, every perturbation is verified (inside
the ball and [0, 1]) and the reported numbers are recomputed from it.
"""

from .autoattack import AttackUnavailableError, autoattack_available
from .end_to_end import AttackResult, LossAttackResult, attack, loss_attack, margin_scores, run_attack
from .feature import FeatureAttackResult, feature_attack
from .settings import AUTOATTACK_VERSIONS, PRESETS, STRENGTHS, AttackSettings, describe, resolve_settings

__all__ = ["AUTOATTACK_VERSIONS", "PRESETS", "STRENGTHS", "AttackResult", "AttackSettings", "AttackUnavailableError",
           "FeatureAttackResult", "LossAttackResult", "attack", "autoattack_available", "describe", "feature_attack",
           "loss_attack", "margin_scores", "resolve_settings", "run_attack"]
