"""Backbones g: images in [0, 1] -> feature vectors, frozen and in eval mode.

* :mod:`.wrapper`: :class:`Backbone` (preprocessing inside, eval mode and frozen parameters
  checked on every call, a content fingerprint for the cache);
* :mod:`.checkpoints`: safetensors files checked before they reach a network;
* :mod:`.hub`: timm models by name;
* :mod:`.bundled`: the bundled backbones (weights + model card);
* :mod:`.registry`: list, create and register backbones;
* :mod:`.nets`: the small architectures of the bundled backbones;
* :mod:`.thirdparty`: backbones shipped inside installed packages (pyautoattack's ResNet-18);
* :mod:`.fused`: eval-only fused copies (batch norm folded, channels_last) for attack iterations.
"""

from ..errors import BackboneUnavailableError, CheckpointError
from .bundled import BUNDLED_DIR, create_bundled_backbone, read_card
from .checkpoints import check_safetensors_file, load_safetensors, load_state_dict_into
from .hub import TIMM_PREFIX, create_timm_backbone
from .registry import BackboneSpec, backbone_specs, create_backbone, list_backbones, register_backbone
from .fused import FuseReport, fused_copy
from .thirdparty import AUTOATTACK_RESNET18, create_autoattack_resnet18
from .wrapper import Backbone, as_backbone, default_device, module_fingerprint

__all__ = [
    "AUTOATTACK_RESNET18", "BUNDLED_DIR", "FuseReport", "create_autoattack_resnet18", "fused_copy", "TIMM_PREFIX", "Backbone", "BackboneSpec", "BackboneUnavailableError", "CheckpointError",
    "as_backbone", "backbone_specs", "check_safetensors_file", "create_backbone", "create_bundled_backbone",
    "create_timm_backbone", "default_device", "list_backbones", "load_safetensors", "load_state_dict_into",
    "module_fingerprint", "read_card", "register_backbone",
]
