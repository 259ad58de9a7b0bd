"""Bundled backbones: safetensors weights plus a JSON model card in ``assets/backbones``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .._io import file_sha256
from ..config import ASSETS_DIR
from ..errors import BackboneUnavailableError, CheckpointError
from .checkpoints import check_safetensors_file, load_safetensors, load_state_dict_into
from .hub import TIMM_PREFIX, create_timm_backbone
from .nets import ARCHS
from .wrapper import Backbone, _forward_features

BUNDLED_DIR = ASSETS_DIR / "backbones"


def read_card(name: str) -> dict[str, Any]:
    """The JSON model card of a bundled backbone."""
    path = BUNDLED_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BackboneUnavailableError(f"model card {str(path)!r} of bundled backbone {name!r} is unreadable: {e}") from e


def create_bundled_backbone(name: str, *, weights: str | os.PathLike[str] | None = None,
                            pretrained: bool = True) -> Backbone:
    """Load a bundled backbone; its weights file must match the sha256 in its card.

    ``weights``: the bundled architecture with the weights of a user's safetensors file instead
    (strict: every key and shape must match, else :class:`CheckpointError` naming them);
    ``pretrained=False``: the bundled architecture with seeded random weights.
    """
    if weights is not None and not pretrained:
        raise ValueError("give either weights=<file> or pretrained=False, not both")
    card = read_card(name)
    arch: str = card["arch"]
    kwargs = dict(card.get("arch_kwargs", {}))
    if weights is not None:
        path, label, source = check_safetensors_file(weights), f"{name}+{Path(weights).name}", f"weights {weights}"
    elif not pretrained:
        path, label, source = None, f"{name} (random init)", "random init (seed 0)"
    else:
        path, label, source = _verified_bundled_file(name, card), name, None
    if arch.startswith(TIMM_PREFIX):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            bb = create_timm_backbone(arch[len(TIMM_PREFIX):], weights=path, pretrained=path is not None,
                                      input_size=card["input_size"], mean=card["mean"], std=card["std"],
                                      name=label, card=card, **kwargs)
        bb.source = source or bb.source
        return bb
    if arch not in ARCHS:
        raise CheckpointError(f"bundled backbone {name!r} names unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = ARCHS[arch](**kwargs)
    if path is not None:
        load_state_dict_into(net, load_safetensors(path), str(path))
    return Backbone(net, name=label, input_size=card["input_size"], mean=card["mean"], std=card["std"],
                    features=_forward_features, card=card if path is not None and weights is None else {},
                    source=source or f"bundled {Path(card['weights']).name}")


def _verified_bundled_file(name: str, card: dict[str, Any]) -> Path:
    path = BUNDLED_DIR / card["weights"]
    if not path.is_file():
        raise BackboneUnavailableError(
            f"weights file {str(path)!r} of bundled backbone {name!r} is missing; restore assets/ from "
            f"the repository or retrain it with `python -m rtcore train {card.get('recipe', name)}`"
        )
    digest = file_sha256(path)
    if digest != card["sha256"]:
        raise CheckpointError(
            f"weights file {str(path)!r} has sha256 {digest[:16]}..., but the model card says "
            f"{card['sha256'][:16]}...; the file was changed or corrupted: restore it from the repository"
        )
    return path
