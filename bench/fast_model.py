"""Prototype (not part of rtcore): a copy of a frozen, eval-mode model that computes the same
function with cheaper passes on CPU, to show what rtcore.attack / feature_attack could gain by
running PGD on such a copy internally (and verifying the result on the original model).

Two changes, both exact up to float32 summation order (max |logit difference| ~1e-5 here):

* BatchNorm2d folded into the preceding Conv2d (``torch.nn.utils.fusion.fuse_conv_bn_eval``)
  wherever the pair sits next to each other in an ``nn.Sequential``: removes every batch-norm
  forward and backward of the attack;
* 4-D weights and activations in ``channels_last`` layout: oneDNN convolutions and max-pooling
  run without the NCHW <-> blocked reorders.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(module: nn.Module) -> int:
    """In place: Conv2d followed by BatchNorm2d (eval mode) in any nn.Sequential becomes one
    Conv2d and an Identity. Returns the number of pairs folded."""
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training \
                    and bn.track_running_stats:
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


def prepare_for_attack(model: nn.Module, channels_last: bool = True, fold: bool = True) -> nn.Module:
    """A frozen eval-mode copy of ``model`` with batch norm folded and channels_last weights."""
    if model.training:
        raise ValueError("prepare_for_attack needs a model in eval mode")
    m = copy.deepcopy(model)
    if fold:
        fold_batchnorm(m)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    m.requires_grad_(False)
    return m.eval()


def ascending_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values: list[float],
                    settings: object) -> list[torch.Tensor]:
    """Prototype of a sweep that never attacks a point again once it is broken: eps in
    increasing order, each a real ``rtcore.attack`` call on the points still robust; a broken
    point keeps the witness found at the smaller eps (it lies inside every larger ball).
    Returns the adversarial images per eps, in the order of ``eps_values``."""
    import rtcore

    order = sorted(range(len(eps_values)), key=lambda i: eps_values[i])
    live = torch.arange(x.shape[0], device=x.device)
    x_best = x.detach().clone()
    out: list[torch.Tensor | None] = [None] * len(eps_values)
    for i in order:
        if live.numel():
            res = rtcore.attack(model, x[live], y[live], eps_values[i], settings=settings)  # type: ignore[arg-type]
            x_best = x_best.clone()
            x_best[live] = res.x_adv.to(x.device)
            live = live[res.robust.to(x.device)]
        out[i] = x_best
    return [t for t in out if t is not None]
