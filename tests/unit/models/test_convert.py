"""Checkpoint conversion (rtcore.models.convert): RobustBench-style and DataParallel checkpoints become safetensors
files that load strictly into the named backbone; pickles that need more than weights_only are refused; nothing is
written on any error."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import rtcore
from rtcore.errors import CheckpointError
from rtcore.models.convert import convert_checkpoint
from rtcore.models.ref import BackboneRef

X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
MU, SIGMA = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


def _tiny_task(folder: Path) -> Path:
    """Two classes of 16 x 16 RGB images (dark and bright), 32 train and 8 test: features in a blink."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = (0.25 + 0.5 * y.view(-1, 1, 1, 1) + 0.2 * torch.rand(40, 3, 16, 16, generator=gen) - 0.1).clamp(0, 1)
    path = folder / "tiny.npz"
    np.savez(path, x_train=x[:32].numpy(), y_train=y[:32].numpy(), x_test=x[32:].numpy(), y_test=y[32:].numpy())
    return path


def _resnet18(num_classes: int = 1000) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=num_classes).eval()


def test_a_robustbench_checkpoint_converts_loads_and_evaluates(tmp_path: Path) -> None:
    net = _resnet18(num_classes=10)
    src = tmp_path / "rb.pt"
    state = {"module." + k: v for k, v in net.state_dict().items()}
    state["module.mu"] = torch.tensor(MU).view(1, 3, 1, 1)
    state["module.sigma"] = torch.tensor(SIGMA).view(1, 3, 1, 1)
    torch.save({"state_dict": state, "epoch": 99, "best_acc": 0.5}, src)
    report = convert_checkpoint(src, tmp_path / "out" / "rb.safetensors", "timm:resnet18")
    assert report.found_at == ("state_dict",) and report.stripped == ("module.",)
    assert report.tensors == len(net.state_dict()) and report.ignored == ("best_acc", "epoch")
    assert report.mean == pytest.approx(MU) and report.std == pytest.approx(SIGMA)
    assert report.normalisation_keys == ("module.mu", "module.sigma")
    ref = BackboneRef("timm:resnet18", weights=report.dst, mean=report.mean, std=report.std, input_size=16)
    g = ref.create("cpu")
    for k, v in net.state_dict().items():  # the 10-class head came along
        assert torch.equal(g.net.state_dict()[k], v), k
    ev = rtcore.evaluate(ref, f"npz:{_tiny_task(tmp_path)}", 2 / 255, n=8, attack="fast", probe="logistic",
                         cache_dir=tmp_path / "c")
    assert len(ev) == 1 and 0 <= ev["bound"].iloc[0] <= ev["robust_acc"].iloc[0] <= ev["clean_acc"].iloc[0] <= 1


def test_dataparallel_and_nested_checkpoints_convert(tmp_path: Path) -> None:
    net = _resnet18()
    src = tmp_path / "dp.pth"
    torch.save(torch.nn.DataParallel(net).state_dict(), src)  # "module." + key, an OrderedDict at the top
    report = convert_checkpoint(src, tmp_path / "dp.safetensors", "timm:resnet18")
    assert report.found_at == () and report.stripped == ("module.",) and report.mean is None
    compiled = collections.OrderedDict(("_orig_mod." + k, v.half() if v.is_floating_point() else v)
                                       for k, v in net.state_dict().items())
    torch.save({"ema": {"model": compiled}, "optimizer": {"lr": 0.1}}, src)
    with pytest.raises(CheckpointError, match="no state dict .*at optimizer.lr .*found: a float"):
        convert_checkpoint(src, tmp_path / "x.safetensors", "timm:resnet18", key="optimizer.lr")  # not a dict
    with pytest.raises(CheckpointError, match="no entry 'opt' on the path key='opt'.*found: \\['ema', 'optimizer'\\]"):
        convert_checkpoint(src, tmp_path / "x.safetensors", "timm:resnet18", key="opt")
    report = convert_checkpoint(src, tmp_path / "ema.safetensors", "timm:resnet18", key="ema.model")
    assert report.found_at == ("ema", "model") and report.stripped == ("_orig_mod.",) and report.cast > 0
    g = BackboneRef("timm:resnet18", weights=report.dst).create("cpu")
    assert all(p.dtype == torch.float32 for p in g.net.parameters())


def test_what_cannot_be_read_safely_or_does_not_fit_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    src = tmp_path / "pickled.pt"
    torch.save({"state_dict": _resnet18().state_dict(), "path_class": Path}, src)  # a class: weights_only refuses
    dst = tmp_path / "out.safetensors"
    with pytest.raises(CheckpointError, match="cannot be read with torch.load\\(weights_only=True\\).*Fix: where "
                                              "you trust the file"):
        convert_checkpoint(src, dst, "timm:resnet18")
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), src)
    with pytest.raises(CheckpointError, match="does not load into timm:resnet18: .*unexpected keys: layer"):
        convert_checkpoint(src, dst, "timm:resnet18")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        convert_checkpoint(src, tmp_path / "out.pt", "timm:resnet18")
    assert not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["pickled.pt"]
