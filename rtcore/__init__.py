"""rtcore: how robust can a linear probe on a frozen backbone be, and does the theory predict it?

Feature-space attacks, linear probes, end-to-end attacks and the bounds of Nern et al.
(NeurIPS 2023, "On Transfer of Adversarial Robustness from Pretraining to Downstream Tasks").

Subpackages: :mod:`rtcore.models` (backbones), :mod:`rtcore.data` (tasks), :mod:`rtcore.attacks`;
modules: :mod:`rtcore.probes`, :mod:`rtcore.bounds`, :mod:`rtcore.pipeline`, :mod:`rtcore.cache`,
:mod:`rtcore.config`, :mod:`rtcore.cli`, :mod:`rtcore.train`, :mod:`rtcore.transfer` (linear probing vs fine-tuning).
"""

from .attacks import (
    PRESETS,
    STRENGTHS,
    AttackResult,
    AttackSettings,
    FeatureAttackResult,
    attack,
    feature_attack,
    resolve_settings,
)
from .bounds import (
    bound_criterion,
    class_weight_spread,
    consistent_delta,
    loss_bound,
    loss_gap_factor,
    margins,
    robust_accuracy_bound,
    weight_diameter,
)
from .cache import ResultCache
from .config import NORMS, Norm
from .data import Task, TaskUnavailableError, list_tasks, load_task, relabel_task, subset_task, task_info
from .errors import BackboneUnavailableError, CacheDirError, CheckpointError, RtcoreError
from .models import (
    Backbone,
    as_backbone,
    backbone_specs,
    create_backbone,
    default_device,
    list_backbones,
    register_backbone,
)
from .pipeline import Evaluation, ProgressEvent, cli_command, evaluate, run_evaluation
from .probes import LinearHead, LinearProbe, ProbedModel
from .transfer import TRANSFER_METHODS, Adapted, FineTuneRecipe, adapt

__version__ = "0.2.0"

__all__ = [
    "NORMS", "PRESETS", "STRENGTHS", "TRANSFER_METHODS", "Adapted", "AttackResult", "AttackSettings", "Backbone", "BackboneUnavailableError", "CacheDirError",
    "CheckpointError", "Evaluation", "FeatureAttackResult", "FineTuneRecipe", "LinearHead", "LinearProbe", "Norm", "ProbedModel",
    "ProgressEvent", "ResultCache", "RtcoreError", "Task", "TaskUnavailableError", "adapt", "as_backbone", "attack",
    "backbone_specs", "bound_criterion", "class_weight_spread", "cli_command", "consistent_delta", "create_backbone",
    "default_device", "evaluate", "feature_attack", "list_backbones", "list_tasks", "load_task", "loss_bound",
    "loss_gap_factor", "margins", "register_backbone", "relabel_task", "resolve_settings", "robust_accuracy_bound",
    "run_evaluation", "subset_task", "task_info", "weight_diameter",
]
