"""Backbones g: images in [0, 1] -> feature vectors, frozen and in eval mode.

* :mod:`.wrapper`: :class:`Backbone` (preprocessing inside, eval mode, frozen float32 parameters
  checked on every call, :meth:`Backbone.fingerprint` for the cache, :meth:`Backbone.feature_info`),
  :func:`resolve_device`;
* :mod:`.identity`: what a network computes as one digest (code, attributes, hooks, weights);
* :mod:`.checkpoints`: safetensors files checked before they reach a network;
* :mod:`.hub`: timm models by name (timm's own eval preprocessing);
* :mod:`.tvmodels`: torchvision classification models by name, local weights only;
* :mod:`.features`: which layer is the representation (pre-logits, pooled, logits, a named module);
* :mod:`.convert`: RobustBench-style and DataParallel checkpoints to safetensors (``python -m rtcore convert``);
* :mod:`.bundled`: the bundled backbones (weights + model card);
* :mod:`.registry`: register, list, describe (:func:`backbone_info`) and create backbones;
* :mod:`.nets`: the small architectures of the bundled backbones;
* :mod:`.thirdparty`: backbones shipped inside installed packages (pyautoattack's ResNet-18);
* :mod:`.fused`: eval-only fused copies (batch norm folded, channels_last) for attack iterations.
"""

from ..errors import BackboneUnavailableError, CheckpointError
from .bundled import BUNDLED_DIR, create_bundled_backbone, read_card
from .checkpoints import check_safetensors_file, load_safetensors, load_state_dict_into
from .convert import ConvertReport, convert_checkpoint
from .features import FEATURE_LAYERS
from .hub import TIMM_PREFIX, create_timm_backbone
from .fused import FuseReport, fused_copy
from .identity import callable_identity, module_identity
from .registry import (
    BackboneSpec,
    backbone_info,
    backbone_specs,
    check_backbone_name,
    create_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)
from .thirdparty import AUTOATTACK_RESNET18, create_autoattack_resnet18
from .tvmodels import TORCHVISION_PREFIX, create_torchvision_backbone
from .wrapper import (
    Backbone,
    FeatureInfo,
    as_backbone,
    available_devices,
    default_device,
    module_fingerprint,
    resolve_device,
)

__all__ = [
    "AUTOATTACK_RESNET18", "BUNDLED_DIR", "FEATURE_LAYERS", "TIMM_PREFIX", "TORCHVISION_PREFIX", "Backbone",
    "BackboneSpec", "BackboneUnavailableError", "CheckpointError", "ConvertReport", "FeatureInfo", "FuseReport",
    "as_backbone", "available_devices", "backbone_info", "backbone_specs", "callable_identity", "check_backbone_name",
    "check_safetensors_file", "convert_checkpoint", "create_autoattack_resnet18", "create_backbone",
    "create_bundled_backbone", "create_timm_backbone", "create_torchvision_backbone", "default_device", "fused_copy",
    "list_backbones", "load_safetensors", "load_state_dict_into", "module_fingerprint", "module_identity",
    "read_card", "register_backbone", "resolve_device", "unregister_backbone",
]
