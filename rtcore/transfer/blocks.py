"""Blocks of a backbone network: the units that ``ft-last-k`` unfreezes, and what fine-tuning moved.

A *block* is a named group of parameters of the network inside a :class:`~rtcore.models.Backbone`:

* **Bundled SmallCNN** (:class:`rtcore.models.nets.SmallCNN`): the three conv blocks of ``body``
  (each conv, its BatchNorm, ReLU and pooling: ``body.0``, ``body.1``, ``body.2``), then ``fc``,
  four blocks in forward order. Its upstream ``classifier`` is not part of g and is never trained.
* **Any other network** (timm models, user modules), a generic rule: the top-level children that
  hold parameters, in registration order, excluding the classifier (timm's ``get_classifier()``,
  or a child named ``classifier``). For a timm ResNet: ``conv1, bn1, layer1, ..., layer4``
  (``fc`` is the classifier). Parameters registered directly on the root module (a ViT's
  ``cls_token`` and ``pos_embed``) belong to no block: only ``ft`` trains them.

``ft-last-k`` trains the last ``k`` blocks; ``ft`` trains every parameter of g (every block plus
root parameters), so ``ft-last-k`` with ``k`` = the number of blocks equals ``ft`` whenever the
root holds no parameters (true for SmallCNN and ResNets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..models.nets import SmallCNN

ROOT_BLOCK = "(root)"


@dataclass(frozen=True)
class Block:
    """A named group of parameters (their names in ``net.named_parameters()``)."""

    name: str
    params: tuple[str, ...]


def classifier_name(net: nn.Module) -> str | None:
    """The top-level child that is the upstream classifier (not part of g), or None."""
    get = getattr(net, "get_classifier", None)
    if callable(get):
        try:
            clf = get()
        except Exception:  # noqa: BLE001 - a model without a usable classifier accessor
            clf = None
        for name, child in net.named_children():
            if clf is not None and child is clf:
                return name
    return "classifier" if isinstance(getattr(net, "classifier", None), nn.Module) else None


def _param_names(prefix: str, module: nn.Module) -> tuple[str, ...]:
    return tuple(f"{prefix}.{n}" for n, _ in module.named_parameters())


def _small_cnn_blocks(net: SmallCNN) -> list[Block]:
    """Split ``body`` at each Conv2d: conv, BN, ReLU, pooling form one block."""
    blocks: list[Block] = []
    current: list[str] = []
    for i, layer in enumerate(net.body):
        if isinstance(layer, nn.Conv2d) and current:
            blocks.append(Block(f"body.{len(blocks)}", tuple(current)))
            current = []
        current.extend(_param_names(f"body.{i}", layer))
    if current:
        blocks.append(Block(f"body.{len(blocks)}", tuple(current)))
    blocks.append(Block("fc", _param_names("fc", net.fc)))
    return blocks


def network_blocks(net: nn.Module) -> list[Block]:
    """The blocks of ``net`` in forward order (see the module docstring for the rule)."""
    if isinstance(net, SmallCNN):
        return _small_cnn_blocks(net)
    clf = classifier_name(net)
    return [Block(name, _param_names(name, child)) for name, child in net.named_children()
            if name != clf and any(True for _ in child.parameters())]


def feature_param_names(net: nn.Module) -> list[str]:
    """Every parameter of g: all parameters except the upstream classifier's."""
    clf = classifier_name(net)
    return [n for n, _ in net.named_parameters() if clf is None or not n.startswith(f"{clf}.")]


def block_of(net: nn.Module) -> dict[str, str]:
    """Parameter name -> its block name (:data:`ROOT_BLOCK` for parameters in no block)."""
    out = {p: b.name for b in network_blocks(net) for p in b.params}
    return {n: out.get(n, ROOT_BLOCK) for n in feature_param_names(net)}


def trainable_names(net: nn.Module, method: str, k: int) -> list[str]:
    """The parameter names a method trains: none (``lp``), all of g (``ft``, ``lp-ft``), the last k blocks."""
    if method == "lp":
        return []
    if method in ("ft", "lp-ft"):
        return feature_param_names(net)
    blocks = network_blocks(net)
    return [p for b in blocks[len(blocks) - k:] for p in b.params]


def count_params(net: nn.Module, names: Sequence[str]) -> int:
    """Total number of scalars in the named parameters."""
    params = dict(net.named_parameters())
    return sum(params[n].numel() for n in names)


def weight_distances(before: Mapping[str, torch.Tensor], after: nn.Module) -> dict[str, float]:
    """L2 distance (float64) of ``after``'s feature parameters from ``before``, per block and ``"total"``."""
    params = dict(after.named_parameters())
    sq: dict[str, float] = {b.name: 0.0 for b in network_blocks(after)}
    for name, block in block_of(after).items():
        d = (params[name].detach().double().cpu() - before[name].detach().double().cpu()).pow(2).sum()
        sq[block] = sq.get(block, 0.0) + float(d)
    out = {b: v ** 0.5 for b, v in sq.items()}
    out["total"] = sum(sq.values()) ** 0.5
    return out
