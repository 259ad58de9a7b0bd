"""torchvision classification models by name (``"torchvision:<model>"``), with local weights only.

rtcore never downloads torchvision weights: ``weights=`` names a local safetensors file (convert a
``.pth`` once with ``python -m rtcore convert``), or the model's default weights are read from
torch's hub cache (``$TORCH_HOME/hub/checkpoints``, where torchvision puts them) with
``torch.load(weights_only=True)``. Without either, :class:`BackboneUnavailableError` says so at once,
with no network call. The preprocessing is the default weights' eval transform (resize the shorter
side, crop the centre, their mean and std and interpolation, antialiased); the features are what the
classifier reads (:data:`rtcore.models.features.FEATURE_LAYERS` ``"pre_logits"``).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from ..errors import BackboneUnavailableError, CheckpointError
from .checkpoints import load_safetensors, load_state_dict_into
from .features import feature_fn
from .wrapper import INTERPOLATIONS, Backbone

__all__ = ["TORCHVISION_PREFIX", "cached_torchvision_weights", "create_torchvision_backbone", "torchvision_arch",
           "torchvision_preprocessing"]

TORCHVISION_PREFIX = "torchvision:"


def torchvision_arch(model_name: str) -> str:
    """``model_name`` if torchvision has a classification model of that name, else ValueError naming close ones."""
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)
    if model_name not in names:
        close = difflib.get_close_matches(model_name, names, n=5)
        hint = f"; similar names: {', '.join(close)}" if close else f"; e.g. {', '.join(names[:5])}"
        raise ValueError(f"torchvision has no classification model {model_name!r}{hint}")
    return model_name


def _default_weights(model_name: str) -> Any:
    import torchvision.models as tvm

    return tvm.get_model_weights(model_name).DEFAULT


def cached_torchvision_weights(model_name: str) -> Path | None:
    """The default weights' file in torch's hub cache, if it is on this machine (no network)."""
    import torch

    p = Path(torch.hub.get_dir()) / "checkpoints" / Path(_default_weights(model_name).url).name
    return p if p.is_file() else None


def torchvision_preprocessing(model_name: str) -> dict[str, Any]:
    """The default weights' eval transform as :class:`Backbone` keywords (read from torchvision's metadata)."""
    t = _default_weights(model_name).transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    interp = str(getattr(t.interpolation, "value", t.interpolation))
    return {"input_size": (3, crop, crop), "mean": tuple(t.mean), "std": tuple(t.std), "crop_pct": crop / resize,
            "interpolation": interp if interp in INTERPOLATIONS else "bilinear", "antialias": bool(t.antialias)}


def _classifier_rows(net: Any, state: dict[str, Any]) -> int | None:
    """The class count of the checkpoint's last ``nn.Linear`` when it differs from ``net``'s, else None."""
    from torch import nn

    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    name, last = linears[-1]
    w = state.get(f"{name}.weight")
    return int(w.shape[0]) if w is not None and w.ndim == 2 and w.shape[0] != last.out_features else None


def _load_pth(net: Any, path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable or code-carrying pickle: named, never unpickled freely
        raise CheckpointError(f"{path} cannot be read with torch.load(weights_only=True) ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); remove it or pass weights=") from e
    load_state_dict_into(net, state, str(path))


def create_torchvision_backbone(model_name: str, *, pretrained: bool = True,
                                weights: str | os.PathLike[str] | None = None) -> Backbone:
    """``torchvision.models.get_model(model_name)`` as a backbone, weights from ``weights`` (safetensors), else
    (``pretrained``) the hub cache's default weights, else random (``pretrained=False``); never downloaded."""
    import torchvision.models as tvm

    torchvision_arch(model_name)
    net = tvm.get_model(model_name, weights=None)
    if weights is not None:
        state = load_safetensors(weights)
        rows = _classifier_rows(net, state)
        if rows is not None:  # a checkpoint of a K-class model keeps its own head
            net = tvm.get_model(model_name, weights=None, num_classes=rows)
        load_state_dict_into(net, state, str(weights))
        source = f"torchvision {model_name} with weights {weights}"
    elif pretrained:
        cached = cached_torchvision_weights(model_name)
        if cached is None:
            import torch

            file = Path(_default_weights(model_name).url).name
            raise BackboneUnavailableError(
                f"torchvision:{model_name} needs its weights on this machine; rtcore does not download them. Fix: "
                f"pass weights='/path/model.safetensors' (CLI: --weights; convert a .pth once with `python -m rtcore "
                f"convert IN.pth OUT.safetensors --backbone torchvision:{model_name}`), or put {file} in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}, or use pretrained=False (--no-pretrained) for random "
                f"weights")
        _load_pth(net, cached)
        source = f"torchvision {model_name} (default weights, {cached.name})"
    else:
        source = f"torchvision {model_name} (random init)"
    return Backbone(net, name=f"{TORCHVISION_PREFIX}{model_name}", features=feature_fn(net, "pre_logits"),
                    source=source, **torchvision_preprocessing(model_name))
