"""rtcore: how robust can a linear probe on a frozen backbone be, and does the theory predict it?

Feature-space attacks, linear probes, end-to-end attacks and the bounds of Nern et al.
(NeurIPS 2023, "On Transfer of Adversarial Robustness from Pretraining to Downstream Tasks").

An evaluation is a value, :class:`EvalSpec` (checked once, TOML/JSON, a stable digest); :func:`plan`
turns specs into small cached units, an :class:`Executor` runs them and builds the tables, and
:func:`execute` (or the keyword form :func:`run_evaluation`) does it all in one call.

Subpackages: :mod:`rtcore.runs` (spec, plan, execute), :mod:`rtcore.models` (backbones),
:mod:`rtcore.data` (tasks), :mod:`rtcore.attacks`, :mod:`rtcore.transfer` (linear probing vs
fine-tuning); modules: :mod:`rtcore.probes`, :mod:`rtcore.bounds`, :mod:`rtcore.tables`,
:mod:`rtcore.cache`, :mod:`rtcore.config`, :mod:`rtcore.registry`, :mod:`rtcore.cli`, :mod:`rtcore.train`.
Every plug-in point (tasks, backbones, probes, strengths, transfer methods) has the verbs
``register_*``, ``list_*``, ``*_info`` and ``create_*``.
"""

from .attacks import (
    PRESETS,
    STRENGTHS,
    AttackResult,
    AttackSettings,
    FeatureAttackResult,
    attack,
    feature_attack,
    create_strength,
    list_strengths,
    register_strength,
    strength_info,
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
from .data import (
    Task,
    TaskDataError,
    TaskUnavailableError,
    check_task_ref,
    create_task,
    is_task_ref,
    list_tasks,
    register_task,
    relabel_task,
    subset_task,
    task_display_name,
    task_info,
)
from .errors import BackboneUnavailableError, CacheDirError, CheckpointError, InputTooLargeError, RtcoreError
from .models import (
    Backbone,
    as_backbone,
    backbone_info,
    backbone_specs,
    create_backbone,
    default_device,
    list_backbones,
    register_backbone,
    resolve_device,
)
from .models.convert import convert_checkpoint
from .models.ref import BackboneRef
from .pipeline import cli_command, evaluate, run_evaluation
from .probes import LinearHead, LinearProbe, ProbedModel, create_probe, list_probes, probe_info, register_probe
from .runs import (
    EvalSpec,
    Evaluation,
    Executor,
    ProgressEvent,
    SweepSpec,
    Unit,
    execute,
    load_spec,
    load_sweep,
    plan,
    sweep,
)
from .transfer import TRANSFER_METHODS, Adapted, FineTuneRecipe, adapt
from .transfer.recipe import TransferMethod, list_transfers, register_transfer, transfer_info

#: older names, kept for scripts written against earlier versions (the project itself calls the new ones)
load_task = create_task
resolve_settings = create_strength

__version__ = "0.4.0"

__all__ = [
    "NORMS", "PRESETS", "STRENGTHS", "TRANSFER_METHODS", "Adapted", "AttackResult", "AttackSettings", "Backbone",
    "BackboneRef", "BackboneUnavailableError", "CacheDirError", "CheckpointError", "EvalSpec", "Evaluation",
    "Executor", "FeatureAttackResult", "FineTuneRecipe", "LinearHead", "LinearProbe", "Norm", "ProbedModel",
    "ProgressEvent", "ResultCache", "RtcoreError", "SweepSpec", "Task", "TaskDataError", "TaskUnavailableError", "TransferMethod", "Unit", "adapt",
    "as_backbone", "attack", "backbone_info", "backbone_specs", "bound_criterion", "check_task_ref", "class_weight_spread",
    "cli_command", "consistent_delta", "convert_checkpoint", "create_backbone", "create_probe", "create_strength", "create_task", "is_task_ref", "default_device", "evaluate", "execute", "feature_attack",
    "list_backbones", "list_probes", "list_strengths", "list_tasks", "list_transfers", "load_spec", "load_sweep", "load_task", "loss_bound",
    "loss_gap_factor", "margins", "plan", "probe_info", "register_backbone", "register_probe", "register_strength",
    "register_task", "strength_info", "InputTooLargeError",
    "register_transfer", "relabel_task", "resolve_device", "resolve_settings", "robust_accuracy_bound", "run_evaluation", "subset_task",
    "task_display_name", "task_info",
    "sweep", "transfer_info", "weight_diameter",
]
