"""CUDA: every test here needs a GPU (marker ``cuda``; skipped without one). scripts/gpu_check.sh runs them.

A GPU computes other bits than the CPU (other kernels), so GPU numbers are compared with the CPU's within
tolerances, never exactly, and are never served from the CPU's cache entries (the arithmetic is in every key).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rtcore
from rtcore.models import resolve_device
from rtcore.models.ref import BackboneRef

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)")]

ARGS = {"tasks": "fmnist-novel", "eps": [2 / 255, 8 / 255], "n": 64, "attack": "fast", "probe": "logistic"}


def test_backbones_compute_on_cuda_as_on_the_cpu_within_float_tolerance() -> None:
    x = torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for ref in (BackboneRef("fmnist-cnn-standard"), BackboneRef("timm:resnet18", pretrained=False, input_size=64)):
        torch.manual_seed(0)
        cpu = ref.create("cpu")
        torch.manual_seed(0)
        gpu = ref.create("cuda")
        assert gpu.device.type == "cuda" and gpu.fingerprint() == cpu.fingerprint()
        f_cpu, f_gpu = cpu(x), gpu(x.cuda()).cpu()
        assert torch.allclose(f_gpu, f_cpu, rtol=1e-3, atol=1e-4), (f_gpu - f_cpu).abs().max()


def test_attacks_on_cuda_stay_in_the_ball_and_the_box() -> None:
    g = rtcore.create_backbone("fmnist-cnn-standard", device="cuda")
    task = rtcore.create_task("fmnist-novel")
    x, y = task.x_test[:64].cuda(), task.y_test[:64].cuda()
    head = torch.nn.Linear(g.feature_dim((1, 28, 28)), task.num_classes).cuda().eval().requires_grad_(False)
    model = rtcore.ProbedModel(g, rtcore.LinearHead(head.weight, head.bias))
    eps = 8 / 255
    res = rtcore.attack(model, x, y, eps, settings="fast")
    assert res.x_adv.device.type == "cuda"
    assert float((res.x_adv - x).abs().amax()) <= eps + 1e-6
    assert 0 <= float(res.x_adv.min()) <= float(res.x_adv.max()) <= 1


def _entries(cache: Path) -> int:
    return len(list((cache / "results").rglob("*.safetensors")))


def test_an_evaluation_on_cuda_agrees_with_the_cpu_and_keeps_its_own_cache(tmp_path: Path) -> None:
    gpu = rtcore.evaluate("fmnist-cnn-standard", device="cuda", cache_dir=tmp_path, **ARGS)
    n_gpu = _entries(tmp_path)
    cpu = rtcore.evaluate("fmnist-cnn-standard", device="cpu", cache_dir=tmp_path, **ARGS)
    n_both = _entries(tmp_path)
    assert n_both == 2 * n_gpu > 0, "the CPU computed its own entries; none of the GPU's was served to it"
    for df in (gpu, cpu):
        assert ((df["bound"] <= df["robust_acc"] + 1e-12) & (df["robust_acc"] <= df["clean_acc"] + 1e-12)).all()
    assert (gpu["clean_acc"] - cpu["clean_acc"]).abs().max() <= 2 / 64  # a point or two near a margin may flip
    assert (gpu["robust_acc"] - cpu["robust_acc"]).abs().max() <= 4 / 64
    again = rtcore.evaluate("fmnist-cnn-standard", device="cuda", cache_dir=tmp_path, **ARGS)
    assert _entries(tmp_path) == n_both  # the GPU's own entries are reused
    cols = [c for c in gpu.columns if c != "seconds"]
    assert again[cols].equals(gpu[cols])


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_runs_on_cuda_and_is_never_mixed_with_float32(precision: str, tmp_path: Path) -> None:
    base = rtcore.evaluate("fmnist-cnn-standard", device="cuda", cache_dir=tmp_path, **ARGS)
    low = rtcore.evaluate("fmnist-cnn-standard", device="cuda", cache_dir=tmp_path, precision=precision, **ARGS)
    assert len(low) == len(base)
    assert ((low["bound"] <= low["robust_acc"] + 1e-12) & (low["robust_acc"] <= low["clean_acc"] + 1e-12)).all()
    assert (low["clean_acc"] == base["clean_acc"]).all()  # clean numbers are float32 either way


def test_device_names_are_checked_against_the_gpus_present() -> None:
    assert resolve_device("cuda").type == "cuda"
    with pytest.raises(ValueError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
