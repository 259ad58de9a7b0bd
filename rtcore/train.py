"""Pretraining recipes for the bundled backbones: ``python -m rtcore train <recipe>``.

Upstream data: the real Fashion-MNIST training images of classes 0-4 with index < 50000
(:func:`rtcore.data.load_upstream`); downstream tasks never reuse them. Each recipe writes
``assets/backbones/<name>.safetensors`` and a JSON model card whose numbers come from
rtcore's own evaluation on the upstream test images (Fashion-MNIST test set, classes 0-4).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._io import atomic_write, file_sha256
from .attacks import attack
from .data import create_task, load_upstream
from .models import BUNDLED_DIR, TIMM_PREFIX, Backbone
from .models.nets import ARCHS

log = logging.getLogger(__name__)

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    method: str  # "erm" | "pgd" | "simclr"
    arch: str = "small-cnn"
    arch_kwargs: dict[str, Any] = field(default_factory=lambda: {"in_chans": 1, "width": 32, "feature_dim": 128, "num_classes": 5})
    input_size: tuple[int, int, int] = (1, 28, 28)
    mean: tuple[float, ...] = FMNIST_MEAN
    std: tuple[float, ...] = FMNIST_STD
    epochs: int = 6
    lr: float = 2e-3
    batch_size: int = 128
    eps: float = 0.0
    norm: str = "linf"
    pgd_steps: int = 5
    temperature: float = 0.5
    seed: int = 0
    eval_eps: float = 0.1
    eval_norm: str = "linf"


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("fmnist-cnn-standard", "Small CNN, standard (ERM) training on Fashion-MNIST classes 0-4.", "erm", epochs=4),
    Recipe("fmnist-cnn-pgd-linf-0.1", "Small CNN, PGD adversarial training (linf, eps 0.1) on Fashion-MNIST classes 0-4.",
           "pgd", epochs=5, pgd_steps=4, eps=0.1, norm="linf", eval_eps=0.1, eval_norm="linf"),
    Recipe("fmnist-cnn-pgd-l2-1.0", "Small CNN, PGD adversarial training (l2, eps 1.0) on Fashion-MNIST classes 0-4.",
           "pgd", epochs=5, pgd_steps=4, eps=1.0, norm="l2", eval_eps=1.0, eval_norm="l2"),
    Recipe("fmnist-cnn-simclr", "Small CNN, SimCLR contrastive pretraining without labels on Fashion-MNIST classes 0-4 "
           "(upstream accuracy from a linear probe on its features).", "simclr", epochs=8, lr=2e-3, batch_size=256),
    Recipe("fmnist-timm-resnet-standard", "timm test_resnet (ResNet, 0.37M parameters), standard training on "
           "Fashion-MNIST classes 0-4; loaded through timm's own pretrained-file path.", "erm",
           arch=f"{TIMM_PREFIX}test_resnet", arch_kwargs={"in_chans": 1, "num_classes": 5}, input_size=(1, 64, 64),
           mean=(0.5,), std=(0.5,), epochs=3, lr=2e-3),
]}


def build_net(recipe: Recipe) -> nn.Module:
    if recipe.arch.startswith(TIMM_PREFIX):
        import timm

        return timm.create_model(recipe.arch[len(TIMM_PREFIX):], pretrained=False, **recipe.arch_kwargs)
    return ARCHS[recipe.arch](**recipe.arch_kwargs)


def _feature_fn(recipe: Recipe):  # type: ignore[no-untyped-def]
    from .models.wrapper import _forward_features, _timm_pre_logits

    return _timm_pre_logits if recipe.arch.startswith(TIMM_PREFIX) else _forward_features


class _Trainable(nn.Module):
    """Preprocessing + network, trainable (the frozen :class:`Backbone` is built afterwards)."""

    def __init__(self, net: nn.Module, recipe: Recipe) -> None:
        super().__init__()
        self.net, self.recipe, self._features = net, recipe, _feature_fn(recipe)
        self.register_buffer("mean", torch.tensor(recipe.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(recipe.std).view(1, -1, 1, 1))

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != tuple(self.recipe.input_size[1:]):
            x = F.interpolate(x, size=self.recipe.input_size[1:], mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(self.net, self.pre(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.pre(x))


def _pgd_train_batch(model: _Trainable, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Madry PGD for adversarial training (model in eval mode while attacking)."""
    eps, steps = recipe.eps, recipe.pgd_steps
    alpha = 2.5 * eps / steps
    if recipe.norm == "linf":
        delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
    else:
        delta = torch.randn(x.shape, generator=gen)
        delta = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps * 0.5
    x_adv = (x + delta).clamp(0, 1)
    model.eval()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            if recipe.norm == "linf":
                x_adv = x_adv + alpha * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
            else:
                g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                d = x_adv + alpha * g - x
                d = d * (eps / d.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1).view(-1, 1, 1, 1)
                x_adv = x + d
            x_adv = x_adv.clamp(0, 1)
    model.train()
    return x_adv.detach()


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """SimCLR views: random resized crop + rotation (affine), flip, brightness/contrast, noise."""
    n = x.shape[0]
    scale = 0.6 + 0.4 * torch.rand(n, generator=gen)
    angle = (torch.rand(n, generator=gen) - 0.5) * (math.pi / 6)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.4
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
    bright = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    v = (v - 0.5) * contrast + 0.5 + bright
    v = v + 0.05 * torch.randn(v.shape, generator=gen)
    return v.clamp(0, 1)


def _nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def _train(model: _Trainable, recipe: Recipe, x: torch.Tensor, y: torch.Tensor, report: Any) -> None:
    gen = torch.Generator().manual_seed(recipe.seed)
    proj = None
    params = list(model.parameters())
    if recipe.method == "simclr":
        dim = model.features(x[:2]).shape[1]
        proj = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 64))
        params += list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=5e-4)
    n_batches = math.ceil(x.shape[0] / recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.epochs * n_batches)
    model.train()
    for epoch in range(recipe.epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for b in range(n_batches):
            idx = perm[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            xb, yb = x[idx], y[idx]
            if recipe.method == "erm":
                loss = F.cross_entropy(model(xb), yb)
            elif recipe.method == "pgd":
                loss = F.cross_entropy(model(_pgd_train_batch(model, xb, yb, recipe, gen)), yb)
            else:
                assert proj is not None
                loss = _nt_xent(proj(model.features(_augment(xb, gen))), proj(model.features(_augment(xb, gen))),
                                recipe.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        report(f"epoch {epoch + 1}/{recipe.epochs} loss {total / n_batches:.4f}")


def upstream_metrics(backbone: Backbone, recipe: Recipe, x_train: torch.Tensor, y_train: torch.Tensor,
                     n_robust: int = 1000) -> dict[str, float]:
    """Upstream clean and robust accuracy of a linear probe on the backbone (for every recipe:
    the same protocol, so ERM, adversarial and SimCLR backbones are comparable)."""
    from .probes import LinearProbe, ProbedModel

    seen = create_task("fmnist-seen")  # official test images of classes 0-4
    x_test, y_test = seen.x_test, seen.y_test
    with torch.no_grad():
        f_train = torch.cat([backbone(x_train[i:i + 1024]) for i in range(0, x_train.shape[0], 1024)])
        f_test = torch.cat([backbone(x_test[i:i + 1024]) for i in range(0, x_test.shape[0], 1024)])
    probe = LinearProbe(C=1.0, space="standardised", num_classes=5).fit(f_train, y_train)
    clean = probe.score(f_test, y_test)
    model = ProbedModel(backbone, probe.as_module())
    res = attack(model, x_test[:n_robust], y_test[:n_robust], recipe.eval_eps, norm=recipe.eval_norm, settings="standard")
    return {"upstream_clean_acc": clean, "upstream_robust_acc": float(res.robust.float().mean()),
            "upstream_eval_eps": recipe.eval_eps, "upstream_eval_norm": recipe.eval_norm,
            "upstream_eval_n_robust": n_robust, "upstream_eval_protocol":
            "linear probe (C=1) on frozen features of the upstream train images; robust accuracy by rtcore.attack "
            "'standard' on the first n test images of classes 0-4"}


def run_recipe(name: str, out_dir: Path = BUNDLED_DIR, epochs: int | None = None, report: Any = None) -> dict[str, Any]:
    """Train a recipe, evaluate it, write weights + card atomically; returns the card."""
    from safetensors.torch import save

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid: {sorted(RECIPES)}")
    recipe = RECIPES[name]
    if epochs is not None:
        recipe = Recipe(**{**asdict(recipe), "epochs": epochs})
    report = report or (lambda msg: log.info("%s: %s", name, msg))
    torch.manual_seed(recipe.seed)
    x, y, _classes = load_upstream()
    net = build_net(recipe)
    model = _Trainable(net, recipe)
    t0 = time.perf_counter()
    _train(model, recipe, x, y, report)
    wall = time.perf_counter() - t0
    net.eval()
    backbone = Backbone(net, name=name, input_size=recipe.input_size, mean=recipe.mean, std=recipe.std,
                        features=_feature_fn(recipe))
    metrics = upstream_metrics(backbone, recipe, x, y)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.safetensors"
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    atomic_write(weights, save(state))
    card = {
        "name": name, "description": recipe.description, "arch": recipe.arch, "arch_kwargs": recipe.arch_kwargs,
        "input_size": list(recipe.input_size), "mean": list(recipe.mean), "std": list(recipe.std),
        "feature_dim": int(backbone(x[:1]).shape[1]), "weights": weights.name, "sha256": file_sha256(weights),
        "recipe": name, "method": recipe.method, "train_eps": recipe.eps, "train_norm": recipe.norm if recipe.method == "pgd" else None,
        "seed": recipe.seed, "epochs": recipe.epochs, "batch_size": recipe.batch_size, "lr": recipe.lr,
        "wall_time_s": round(wall, 1), "hardware": f"{platform.machine()} CPU x{torch.get_num_threads()} threads"
        if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "torch": torch.__version__, "upstream_data": "Fashion-MNIST train, classes 0-4, indices < 50000",
        **metrics,
    }
    atomic_write(out_dir / f"{name}.json", (json.dumps(card, indent=2) + "\n").encode())
    return card
