"""Training recipes: names state the protocol, augmentations and losses behave, retraining reproduces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rtcore import train as T
from rtcore.data import TaskUnavailableError, load_upstream
from rtcore.models import BUNDLED_DIR


def test_recipe_names_state_the_protocol() -> None:
    methods = {r.method for r in T.RECIPES.values()}
    assert {"erm", "pgd", "simclr"} <= methods
    for name, r in T.RECIPES.items():
        if r.method == "pgd":
            assert f"-pgd-{r.norm}-" in name and float(name.rsplit("-", 1)[1]) == r.eps, name
        else:
            assert name.endswith({"erm": "-standard", "simclr": "-simclr"}[r.method]), name
    assert any(r.arch.startswith("timm:") for r in T.RECIPES.values())


def test_augment_is_seeded_and_in_range() -> None:
    x = torch.rand(8, 1, 28, 28)
    a = T._augment(x, torch.Generator().manual_seed(1))
    b = T._augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, T._augment(x, torch.Generator().manual_seed(2)))


def test_nt_xent_prefers_aligned_views() -> None:
    z = torch.randn(16, 8)
    aligned = T._nt_xent(z, z + 0.01 * torch.randn(16, 8), 0.5)
    shuffled = T._nt_xent(z, z[torch.randperm(16)], 0.5)
    assert float(aligned) < float(shuffled)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_training_pgd_stays_in_the_ball(norm: str) -> None:
    recipe = T.Recipe("t", "t", "pgd", eps=0.1 if norm == "linf" else 1.0, norm=norm, pgd_steps=3)
    model = T._Trainable(T.build_net(recipe), recipe)
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 5, (6,))
    xa = T._pgd_train_batch(model, x, y, recipe, torch.Generator().manual_seed(0))
    d = (xa - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert float(dist.max()) <= recipe.eps + 1e-5 and float(xa.min()) >= 0 and float(xa.max()) <= 1
    assert model.training, "the model returns to training mode after the attack"


@pytest.mark.slow
def test_retraining_reproduces_the_card(tmp_path: Path) -> None:
    """Retrain the standard recipe and compare with the bundled card (observed: within 0.01)."""
    try:
        load_upstream()
    except TaskUnavailableError as e:
        pytest.skip(f"no full Fashion-MNIST copy: {e}")
    card = T.run_recipe("fmnist-cnn-standard", tmp_path)
    bundled = json.loads((BUNDLED_DIR / "fmnist-cnn-standard.json").read_text())
    assert abs(card["upstream_clean_acc"] - bundled["upstream_clean_acc"]) <= 0.01
    assert abs(card["upstream_robust_acc"] - bundled["upstream_robust_acc"]) <= 0.02
