"""The benchmark rows (a backbone, a task, a number of test points) that bench/strength.py and bench/attacks.py
time, by name, and how each row's classifier is built: the backbone, the pipeline's logistic probe on its train
features (cached) and the seeded test points.

* ``cnn-robust`` / ``cnn-standard``: the bundled Fashion-MNIST CNNs (adversarially trained / standard);
* ``resnet18``: the third-party CIFAR-10 ResNet-18 that pyautoattack ships (Fashion-MNIST images resized to
  3x32x32 by the backbone);
* ``resnet50-224``: a randomly initialised timm ResNet-50 at 224 x 224 pixels (seeded; no download), for timing
  a large model only: its robust accuracy means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import rtcore


@dataclass(frozen=True)
class Row:
    """One benchmark row: ``timing_only`` rows are left out of the strength targets."""

    name: str
    backbone: str
    task: str = "fmnist-novel"
    n: int = 256
    chunks: int = 4  # bench/strength.py: the points are attacked in this many interleaved chunks
    pretrained: bool = True
    timing_only: bool = False


ROWS: dict[str, Row] = {r.name: r for r in (
    Row("cnn-robust", "fmnist-cnn-pgd-linf-0.1"),
    Row("cnn-standard", "fmnist-cnn-standard"),
    Row("resnet18", "autoattack-resnet18-cifar10", n=128, chunks=2),
    Row("resnet50-224", "timm:resnet50", n=32, chunks=1, pretrained=False, timing_only=True),
)}


def create(backbone: str, pretrained: bool, device: str) -> rtcore.Backbone:
    """The backbone; random weights are seeded, so that every run (and the probe's cache) sees the same ones."""
    if not pretrained:
        torch.manual_seed(0)
    return rtcore.create_backbone(backbone, device=device, pretrained=pretrained)


def load(row: Row, device: str, n: int | None = None) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The row's classifier (the pipeline's cached logistic probe on the backbone) and its seeded test points."""
    from rtcore import cached as steps
    from rtcore.runs import test_indices

    g = create(row.backbone, row.pretrained, device)
    task = rtcore.create_task(row.task)
    probe = steps.fit_probe(g, task, rtcore.ResultCache())
    model = rtcore.ProbedModel(g, probe.as_module().to(g.device)).eval()
    idx = test_indices(task.x_test.shape[0], n or row.n, 0)
    return model, task.x_test[idx].to(g.device), task.y_test[idx].to(g.device)
