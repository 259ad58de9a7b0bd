"""Attacks: one base every attack plugs into, its loop and step rules, and the named strengths.

* :mod:`.base`: :class:`Attack`, everything an attack shares (the input checks, device and dtype,
  one eps or several per call, the search over runs, witness carry-over, the inside-the-ball check,
  results recomputed on the original model and packaged as a :class:`Result`);
* :mod:`.pool`: the one projected-gradient loop, a pool of runs stepped together in full chunks (keep-best,
  early stop, give-up); :mod:`.engine`: the cosine step rule and the device helpers;
  :mod:`.apgd`: APGD's step rule; :mod:`.geometry`: starts, projection, norms;
* :mod:`.feature`: :func:`feature_attack`, ``Delta(x; eps) = sup ||g(x') - g(x)||_2`` from below,
  and with a projector the head-subspace shift;
* :mod:`.end_to_end`: :func:`attack` on a classifier, its runs from the plan the settings name
  (:mod:`.plans`: ``register_plan``, ``list_plans``, ``plan_info``, ``create_plan``; 'fixed' there,
  'adaptive' in :mod:`.adaptive`); :mod:`.loss`: :func:`loss_attack`;
* :mod:`.search`: the values one search passes around (rows, runs, state, the progress callback);
* :mod:`.autoattack`: AutoAttack (pyautoattack) as the end-to-end search of the 'autoattack' strength;
* :mod:`.settings`: :class:`AttackSettings` and the strengths (``register_strength``,
  ``list_strengths``, ``strength_info``, ``create_strength``).

The iterations run on a verified fused copy of the model (:mod:`rtcore.models.fused`); every
reported number is recomputed on the original model. Every attack takes one eps (results
``(N,)``) or a list of E eps (results ``(E, N)``) in one call; results are monotone in eps and
every perturbation is verified (inside the ball and [0, 1]).
"""

from .autoattack import AttackUnavailableError, autoattack_available
from .base import Attack, Result
from .end_to_end import AttackResult, EndToEndAttack, attack, margin_scores, run_attack
from .feature import FeatureAttack, FeatureAttackResult, feature_attack
from .loss import LossAttack, LossAttackResult, loss_attack
from .plans import PlanInfo, create_plan, list_plans, plan_info, register_plan
from .search import ProgressFn, Rows, Run
from .settings import (
    AUTOATTACK_VERSIONS,
    PRESETS,
    STRENGTHS,
    AttackSettings,
    AttackSetup,
    StrengthInfo,
    create_strength,
    describe,
    list_strengths,
    register_strength,
    strength_info,
)

__all__ = ["AUTOATTACK_VERSIONS", "PRESETS", "STRENGTHS", "Attack", "AttackResult", "AttackSettings", "AttackSetup",
           "AttackUnavailableError", "EndToEndAttack", "FeatureAttack", "FeatureAttackResult", "LossAttack",
           "LossAttackResult", "PlanInfo", "ProgressFn", "Result", "Rows", "Run", "StrengthInfo", "attack",
           "autoattack_available", "create_plan", "create_strength", "describe", "feature_attack", "list_plans",
           "list_strengths", "loss_attack", "margin_scores", "plan_info", "register_plan", "register_strength",
           "run_attack", "strength_info"]
