"""The fine-tuning loop: deterministic, reporting per batch, resumable at every finished epoch.

The network is a copy of the base backbone's network, kept in eval mode (BatchNorm uses its
frozen running statistics, dropout is off), with ``requires_grad`` only on the parameters the
method trains; only those and the linear head are in the optimiser, so every other parameter and
buffer stays bit-identical to the base. Inputs go through the base backbone's preprocessing, so
the adapted model sees pixels exactly as the base does.

**Resuming.** After every finished epoch a checkpoint (trainable parameters, head, optimiser
state, epoch, elapsed seconds, the shuffle generator's state) is written atomically
(:meth:`AdaptedStore.save_checkpoint`). A later call with the same key loads it and continues with
the next epoch. The shuffle comes from that generator and the learning rate is a function of the
global step, so a resumed run performs exactly the same floating-point operations as an
uninterrupted one (same device and thread count) and ends with the same weights, bit for bit.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import ProgressFn
from ..cache import Rejected
from ..data import Task
from ..models import Backbone
from .recipe import FineTuneRecipe
from .store import CHECKPOINT_FILE, AdaptedStore

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrainResult:
    """The trained network copy (eval mode, frozen again), the head, and how the run went."""

    net: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor
    epochs: int
    seconds: float
    resumed_from_epoch: int
    final_loss: float


@contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block (warn-only, so CUDA ops without a
    deterministic kernel still run), then the previous setting."""
    was, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def feature_fn(g: Backbone) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The function a backbone applies to its network after preprocessing (features of g)."""
    return g._features  # the adapted backbone computes features exactly as the base


def trainable_copy(g: Backbone, names: list[str]) -> nn.Module:
    """A deep copy of ``g.net`` in eval mode with ``requires_grad`` on ``names`` only."""
    net = copy.deepcopy(g.net)
    net.eval()
    net.requires_grad_(False)
    params = dict(net.named_parameters())
    for n in names:
        params[n].requires_grad_(True)
    return net


def _optimizer(recipe: FineTuneRecipe, body: list[nn.Parameter], head: list[nn.Parameter]) -> torch.optim.Optimizer:
    groups = [{"params": body, "lr": recipe.lr}, {"params": head, "lr": recipe.lr * recipe.head_lr_scale}]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def _set_lr(opt: torch.optim.Optimizer, recipe: FineTuneRecipe, step: int, total: int) -> None:
    """Cosine from the base rates to 0, a function of the global step only."""
    factor = 0.5 * (1.0 + math.cos(math.pi * step / total))
    opt.param_groups[0]["lr"] = recipe.lr * factor
    opt.param_groups[1]["lr"] = recipe.lr * recipe.head_lr_scale * factor


def _checkpoint(names: list[str], body: list[nn.Parameter], w: nn.Parameter, b: nn.Parameter,
                opt: torch.optim.Optimizer, gen: torch.Generator, epoch: int,
                seconds: float) -> dict[str, torch.Tensor]:
    out = {f"param.{n}": p.detach() for n, p in zip(names, body)}
    out["head.weight"], out["head.bias"] = w.detach(), b.detach()
    for idx, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                out[f"opt.{idx}.{k}"] = v
            elif v is not None:
                out[f"optnum.{idx}.{k}"] = torch.tensor([float(v)], dtype=torch.float64)
    out["rng"] = gen.get_state()
    out["epoch"] = torch.tensor([epoch], dtype=torch.int64)
    out["seconds"] = torch.tensor([seconds], dtype=torch.float64)
    return out


def _restore(ckpt: dict[str, torch.Tensor], names: list[str], body: list[nn.Parameter], w: nn.Parameter,
             b: nn.Parameter, opt: torch.optim.Optimizer, gen: torch.Generator, epochs: int) -> tuple[int, float]:
    """Load a checkpoint into the run; ValueError if it does not fit it."""
    stored = {k[len("param."):] for k in ckpt if k.startswith("param.")}
    if stored != set(names):
        raise ValueError(f"checkpoint trains {sorted(stored)[:3]}..., this run {names[:3]}...")
    for t, key in [*((p, f"param.{n}") for n, p in zip(names, body)), (w, "head.weight"), (b, "head.bias")]:
        if ckpt[key].shape != t.shape:
            raise ValueError(f"checkpoint tensor {key} has shape {tuple(ckpt[key].shape)}, expected {tuple(t.shape)}")
    epoch = int(ckpt["epoch"][0])
    if not 1 <= epoch <= epochs:
        raise ValueError(f"checkpoint epoch {epoch} is outside 1..{epochs}")
    state: dict[int, dict[str, object]] = {}
    for key, v in ckpt.items():
        if key.startswith(("opt.", "optnum.")):
            kind, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v if kind == "opt" else float(v[0])
    with torch.no_grad():
        for n, p in zip(names, body):
            p.copy_(ckpt[f"param.{n}"])
        w.copy_(ckpt["head.weight"])
        b.copy_(ckpt["head.bias"])
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(ckpt["rng"])
    return epoch, float(ckpt["seconds"][0])


def finetune(g: Backbone, task: Task, names: list[str], head_init: tuple[torch.Tensor, torch.Tensor],
             recipe: FineTuneRecipe, *, key: str, store: AdaptedStore, progress: ProgressFn) -> TrainResult:
    """Train ``names`` of a copy of ``g.net`` and a linear head from ``head_init`` on ``task``'s train split.

    ``recipe`` must have its seed resolved. Resumes from the checkpoint of ``key`` when there is
    a valid one; writes one after every finished epoch (see the module docstring).
    """
    assert recipe.seed is not None
    device = g.device
    net = trainable_copy(g, names)
    params = dict(net.named_parameters())
    body = [params[n] for n in names]
    w = nn.Parameter(head_init[0].detach().float().clone().to(device))
    b = nn.Parameter(head_init[1].detach().float().clone().to(device))
    opt = _optimizer(recipe, body, [w, b])
    gen = torch.Generator().manual_seed(recipe.seed)
    start, seconds = 0, 0.0
    ckpt = store.load_checkpoint(key)
    if ckpt is not None:
        try:
            start, seconds = _restore(ckpt, names, body, w, b, opt, gen, recipe.epochs)
        except (ValueError, KeyError, RuntimeError) as e:
            path = store.folder(key) / CHECKPOINT_FILE
            log.warning("checkpoint %s does not fit this run (%s); starting from epoch 0", path, e)
            store.cache.rejected.append(Rejected(str(path), f"checkpoint does not fit the run: {e}"))
            store.drop_checkpoint(key)
            return finetune(g, task, names, head_init, recipe, key=key, store=store, progress=progress)
    features, pre = feature_fn(g), g.preprocess
    x_all, y_all = task.x_train, task.y_train
    n = x_all.shape[0]
    n_batches = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * n_batches
    last_loss = float("nan")
    progress(start / recipe.epochs)
    with deterministic():
        for epoch in range(start, recipe.epochs):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=gen)
            for bi in range(n_batches):
                step = epoch * n_batches + bi
                _set_lr(opt, recipe, step, total)
                idx = perm[bi * recipe.batch_size:(bi + 1) * recipe.batch_size]
                xb, yb = x_all[idx].to(device), y_all[idx].to(device)
                logits = features(net, pre(xb)).flatten(1) @ w.T + b
                loss = F.cross_entropy(logits, yb)
                if not bool(torch.isfinite(loss)):
                    raise RuntimeError(f"fine-tuning diverged: loss {float(loss)} at epoch {epoch + 1}, "
                                       f"batch {bi + 1}; lower the learning rate (FineTuneRecipe lr={recipe.lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                last_loss = float(loss.detach())
                if bi + 1 < n_batches:
                    progress((step + 1) / total)
            seconds += time.perf_counter() - t0
            store.save_checkpoint(key, _checkpoint(names, body, w, b, opt, gen, epoch + 1, seconds))
            progress((epoch + 1) / recipe.epochs)
    net.requires_grad_(False)
    net.eval()
    return TrainResult(net, w.detach().cpu().clone(), b.detach().cpu().clone(), recipe.epochs, seconds, start,
                       last_loss)
