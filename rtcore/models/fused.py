"""Eval-only fused copies of frozen models, for the iterations of an attack.

An attack runs the model forward and backward a few hundred times on the same weights. Two
rewrites compute the same function with cheaper passes:

* every ``BatchNorm2d`` (eval mode, running statistics) that consumes the output of a ``Conv2d``
  is folded into that convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``): no batch-norm
  forward or backward is left;
* 4-D weights are stored ``channels_last``: oneDNN / cuDNN convolutions and pooling run without
  layout reorders.

Both are exact up to float32 summation order. Pairs are found by running the copy once on a
probe batch with hooks (a batch norm whose input *is* a convolution's output, each called once),
so any module layout works (``nn.Sequential`` chains, ResNet blocks, timm models). Every copy is
verified against the original on the caller's probe batch: if the largest output difference
exceeds ``rtol`` times the output scale, the original is used instead. Callers (the attacks)
use the copy only to search; every reported number is recomputed on the original model.

Copies are cached per module object and invalidated when any parameter or buffer is replaced
or changed in place (``tensor._version``).
"""

from __future__ import annotations

import copy
import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

#: largest accepted |f_fused - f| relative to max |f| on the probe batch (float32 noise is ~1e-6)
FUSE_RTOL = 1e-3
PROBE_ROWS = 32

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[int, int, int], ...], nn.Module, int]] = \
    weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class FuseReport:
    """What :func:`fused_copy` did: ``used`` says whether the copy replaces the original."""

    used: bool
    folded: int  # conv + batch-norm pairs folded
    channels_last: bool
    max_abs_diff: float  # on the probe batch (nan when no copy was made)
    reason: str


def _signature(module: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """Identity and in-place version of every parameter and buffer: changes when weights change."""
    return tuple((id(t), t.data_ptr(), t._version) for t in (*module.parameters(), *module.buffers()))


def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (root.get_submodule(parent_name) if parent_name else root), attr


def conv_bn_pairs(module: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv name, batch-norm name)`` pairs where the batch norm's input is the convolution's
    output, each module called exactly once on ``probe``, the batch norm in eval mode with
    running statistics."""
    convs = {m: n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    bns = {m: n for n, m in module.named_modules()
           if isinstance(m, nn.BatchNorm2d) and not m.training and m.track_running_stats
           and m.running_mean is not None and m.running_var is not None}
    outputs: dict[int, tuple[str, torch.Tensor, int]] = {}  # id(output) -> (conv name, output kept alive, version)
    calls: dict[str, int] = {}
    feeds: dict[str, str] = {}  # bn name -> conv name

    def conv_hook(mod: nn.Module, args: tuple[object, ...], out: torch.Tensor) -> None:
        name = convs[mod]
        calls[name] = calls.get(name, 0) + 1
        outputs[id(out)] = (name, out, out._version)

    def bn_hook(mod: nn.Module, args: tuple[object, ...]) -> None:
        name = bns[mod]
        calls[name] = calls.get(name, 0) + 1
        hit = outputs.get(id(args[0])) if args else None
        # the very tensor the convolution returned, not changed in place since (e.g. by ReLU(inplace=True))
        if hit is not None and hit[1] is args[0] and hit[2] == args[0]._version:
            feeds[name] = hit[0]

    handles = [m.register_forward_hook(conv_hook) for m in convs]
    handles += [m.register_forward_pre_hook(bn_hook) for m in bns]
    try:
        with torch.no_grad():
            module(probe)
    finally:
        for h in handles:
            h.remove()
    used_convs = [c for c in feeds.values()]
    return [(c, b) for b, c in feeds.items()
            if calls.get(b) == 1 and calls.get(c) == 1 and used_convs.count(c) == 1]


def fold_batchnorm(module: nn.Module, probe: torch.Tensor) -> int:
    """In place: fold every batch norm that consumes a convolution's output into it (the batch
    norm becomes ``nn.Identity``). Returns the number of pairs folded."""
    pairs = conv_bn_pairs(module, probe)
    for conv_name, bn_name in pairs:
        conv, bn = module.get_submodule(conv_name), module.get_submodule(bn_name)
        fused = fuse_conv_bn_eval(conv, bn)  # type: ignore[arg-type]
        fused.requires_grad_(False)
        parent, attr = _parent(module, conv_name)
        setattr(parent, attr, fused)
        parent, attr = _parent(module, bn_name)
        setattr(parent, attr, nn.Identity())
    return len(pairs)


def _build(model: nn.Module, probe: torch.Tensor) -> tuple[nn.Module, int]:
    twin = copy.deepcopy(model)
    twin.eval()
    folded = fold_batchnorm(twin, probe)
    twin = twin.to(memory_format=torch.channels_last)  # type: ignore[call-arg]
    twin.requires_grad_(False)
    return twin.eval(), folded


def _cached_twin(model: nn.Module, probe: torch.Tensor) -> tuple[nn.Module, int]:
    sig = _signature(model)
    with _LOCK:
        hit = _CACHE.get(model)
    if hit is not None and hit[0] == sig:
        return hit[1], hit[2]
    twin, folded = _build(model, probe)
    with _LOCK:
        _CACHE[model] = (sig, twin, folded)
    return twin, folded


def fused_copy(model: nn.Module, probe: torch.Tensor, *, rtol: float = FUSE_RTOL) -> tuple[nn.Module, FuseReport]:
    """An eval-only copy of ``model`` with batch norm folded into the convolutions and
    channels_last weights, verified on ``probe`` (a few input rows); the original when there is
    nothing to gain (no convolution) or the copy does not match.

    A :class:`rtcore.probes.ProbedModel` is fused through its backbone (the linear head is kept),
    so that one cached copy of a backbone serves every head on it. The copy must only be used
    to search; compute reported numbers on the original.
    """
    if model.training:
        raise ValueError("fused_copy needs a model in eval mode (call model.eval()); batch norm folding "
                         "uses the running statistics")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model, FuseReport(False, 0, False, float("nan"), "no convolution: nothing to fuse")
    from ..probes import ProbedModel

    probe = probe[:PROBE_ROWS].detach()
    try:
        if isinstance(model, ProbedModel):
            twin_bb, folded = _cached_twin(model.backbone, probe)
            twin: nn.Module = ProbedModel(twin_bb, model.head)
        else:
            twin, folded = _cached_twin(model, probe)
        with torch.no_grad():
            ref, out = model(probe), twin(probe)
    except Exception as e:  # noqa: BLE001 - a model that cannot be copied or rewritten is used as it is
        return model, FuseReport(False, 0, False, float("nan"), f"not fused ({type(e).__name__}: {e})")
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
        return model, FuseReport(False, folded, True, float("nan"), "the copy's output has another shape")
    diff = float((out.float() - ref.float()).abs().max()) if ref.numel() else 0.0
    scale = float(ref.float().abs().max()) if ref.numel() else 0.0
    if not diff <= rtol * max(scale, 1e-12):
        return model, FuseReport(False, folded, True, diff,
                                 f"max |difference| {diff:.3g} above {rtol:g} x output scale {scale:.3g}: original used")
    return twin, FuseReport(True, folded, True, diff, "fused copy used")


def clear_fused_cache() -> None:
    """Drop every cached fused copy (they are also dropped with their original module)."""
    with _LOCK:
        _CACHE.clear()
