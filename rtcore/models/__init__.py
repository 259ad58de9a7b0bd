"""Backbones g: images in [0, 1] -> feature vectors, frozen and in eval mode.

* :mod:`.wrapper`: :class:`Backbone` (preprocessing inside, eval mode, frozen float32 parameters
  checked on every call, :meth:`Backbone.fingerprint` for the cache, :meth:`Backbone.feature_info`),
  :func:`resolve_device`;
* :mod:`.identity`: what a network computes as one digest (code, attributes, hooks, weights);
* :mod:`.checkpoints`: safetensors files checked before they reach a network;
* :mod:`.hub`: timm models by name;
* :mod:`.bundled`: the bundled backbones (weights + model card);
* :mod:`.registry`: register, list, describe (:func:`backbone_info`) and create backbones;
* :mod:`.nets`: the small architectures of the bundled backbones;
* :mod:`.thirdparty`: backbones shipped inside installed packages (pyautoattack's ResNet-18);
* :mod:`.fused`: eval-only fused copies (batch norm folded, channels_last) for attack iterations.
"""

from ..errors import BackboneUnavailableError, CheckpointError
from .bundled import BUNDLED_DIR, create_bundled_backbone, read_card
from .checkpoints import check_safetensors_file, load_safetensors, load_state_dict_into
from .hub import TIMM_PREFIX, create_timm_backbone
from .fused import FuseReport, fused_copy
from .identity import callable_identity, module_identity
from .registry import (
    BackboneSpec,
    backbone_info,
    backbone_specs,
    create_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)
from .thirdparty import AUTOATTACK_RESNET18, create_autoattack_resnet18
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
    "AUTOATTACK_RESNET18", "BUNDLED_DIR", "TIMM_PREFIX", "Backbone", "BackboneSpec", "BackboneUnavailableError",
    "CheckpointError", "FeatureInfo", "FuseReport", "as_backbone", "available_devices", "backbone_info",
    "backbone_specs", "callable_identity", "check_safetensors_file", "create_autoattack_resnet18", "create_backbone",
    "create_bundled_backbone", "create_timm_backbone", "default_device", "fused_copy", "list_backbones",
    "load_safetensors", "load_state_dict_into", "module_fingerprint", "module_identity", "read_card",
    "register_backbone", "resolve_device", "unregister_backbone",
]
