"""A folder task and the same images as an npz give identical numbers through the whole evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import rtcore


def _backbone() -> rtcore.Backbone:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 5, 8))
    return rtcore.as_backbone(net, name="tiny-linear")


def test_folder_and_npz_refs_give_identical_numbers(folder: Path, build, tmp_path: Path) -> None:
    npz = tmp_path / "arrays.npz"
    np.savez(npz, **build.reference(folder), classes=np.array(build.classes))
    g = _backbone()
    eps = [0.0, 2 / 255, 8 / 255]
    runs = {}
    for kind, ref in (("folder", f"folder:{folder}"), ("npz", f"npz:{npz}")):
        task = rtcore.data.create_task(ref)
        runs[kind] = rtcore.evaluate(g, [task], eps, n=18, attack="fast", cache_dir=str(tmp_path / kind))
    a, b = (runs[k].drop(columns=["task", "seconds"]) for k in ("folder", "npz"))
    pd.testing.assert_frame_equal(a, b)
    assert list(runs["folder"]["task"].unique()) == ["weather"] and list(runs["npz"]["task"].unique()) == ["arrays"]
    df = runs["folder"]
    assert (df["bound"] <= df["robust_acc"] + 1e-12).all() and (df["robust_acc"] <= df["clean_acc"] + 1e-12).all()
