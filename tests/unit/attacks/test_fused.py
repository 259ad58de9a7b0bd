"""The fused copy (batch norm folded, channels_last) and the ascending-eps sweep of rtcore.attack."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

import rtcore
from rtcore.attacks import AttackSettings
from rtcore.models import BUNDLED_DIR
from rtcore.models.fused import clear_fused_cache, conv_bn_pairs, fused_copy
from rtcore.models.nets import SmallCNN

HAVE_BUNDLED = (BUNDLED_DIR / "fmnist-cnn-pgd-linf-0.1.json").is_file()


def _small_cnn(seed: int = 0) -> rtcore.Backbone:
    torch.manual_seed(seed)
    net = SmallCNN(in_chans=1, width=8, feature_dim=16, num_classes=3)
    for m in net.modules():  # non-trivial running statistics, so that folding matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return rtcore.as_backbone(net.eval(), name="small", input_size=(1, 28, 28),
                              features=lambda m, x: m.forward_features(x))


def test_fused_copy_folds_every_batch_norm_and_matches() -> None:
    g = _small_cnn()
    x = torch.rand(16, 1, 28, 28)
    twin, rep = fused_copy(g, x)
    assert rep.used and rep.folded == 3 and rep.channels_last
    assert twin is not g
    assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in g.modules()), "the original is never changed"
    with torch.no_grad():
        assert float((twin(x) - g(x)).abs().max()) <= 1e-4 * float(g(x).abs().max())
    assert fused_copy(g, x)[0] is twin, "cached per module"
    with torch.no_grad():
        g.net.fc.weight.mul_(2)  # an in-place change invalidates the cached copy
    twin2, _ = fused_copy(g, x)
    assert twin2 is not twin
    with torch.no_grad():
        assert torch.allclose(twin2(x), g(x), atol=1e-4)


def test_a_copy_that_does_not_match_falls_back_to_the_original() -> None:
    class Reuse(nn.Module):
        """The convolution's output feeds the batch norm *and* a skip connection: folding is wrong."""

        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1)
            self.bn.running_mean.fill_(3.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = self.conv(x)
            return (self.bn(c) + c).flatten(1)

    net = Reuse().eval()
    x = torch.rand(4, 1, 6, 6)
    assert conv_bn_pairs(net, x) == [("conv", "bn")]  # found by the hooks ...
    model, rep = fused_copy(net, x)
    assert model is net and not rep.used and "original used" in rep.reason  # ... and refused by the check


def test_inplace_relu_between_conv_and_bn_is_not_folded() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(2), nn.Flatten()).eval()
    assert conv_bn_pairs(net, torch.rand(2, 1, 5, 5)) == []


def test_models_without_convolutions_are_used_as_they_are(linear_case) -> None:
    model, rep = fused_copy(linear_case.model, linear_case.x)
    assert model is linear_case.model and not rep.used


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fused_and_unfused_attacks_report_the_same_numbers(norm: str) -> None:
    clear_fused_cache()
    g = _small_cnn(1)
    torch.manual_seed(1)
    model = rtcore.ProbedModel(g, rtcore.LinearHead(torch.randn(3, 16), torch.zeros(3)))
    x = torch.rand(24, 1, 28, 28)
    y = model(x).argmax(1)
    eps = [0.02, 0.05] if norm == "linf" else [0.5, 1.0]
    cfg = AttackSettings(steps=8, restarts=1, feature_restarts=1, losses=("ce",), targets=1)
    a = rtcore.attack(model, x, y, eps, norm=norm, settings=cfg)
    b = rtcore.attack(model, x, y, eps, norm=norm, settings=replace(cfg, fuse=False))
    assert torch.equal(a.robust, b.robust)
    with torch.no_grad():  # reported on the original model
        for i in range(len(eps)):
            assert torch.equal(a.robust[i], (model(a.x_adv[i]).argmax(1) == y) & a.clean_correct)
    f = rtcore.feature_attack(g, x, eps, norm=norm, settings=cfg)
    h = rtcore.feature_attack(g, x, eps, norm=norm, settings=replace(cfg, fuse=False))
    # sign steps on float-noise-sized gradient entries can part the trajectories: same quality, not same bits
    assert float((f.delta.mean(1) - h.delta.mean(1)).abs().max()) <= 0.03 * float(h.delta.mean())
    with torch.no_grad():
        assert torch.allclose(f.delta[1], (g(f.x_adv[1]) - g(x)).norm(dim=1), atol=1e-5)


def test_ascending_sweep_skips_broken_points_and_equals_single_eps_calls() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    x, y = torch.rand(40, 1, 6, 6), torch.randint(0, 4, (40,))
    eps = [0.1, 0.02, 0.05]  # unsorted on purpose
    cfg = AttackSettings(steps=10, targets=1)
    rows: list[int] = []  # rows that went through the model with a gradient: the attack's work
    h = net.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]) if a[0].requires_grad else None)
    sweep = rtcore.attack(net, x, y, eps, settings=cfg)
    sweep_rows = sum(rows)
    singles = {}
    for e in eps:
        singles[e] = rtcore.attack(net, x, y, e, settings=cfg).robust
    h.remove()
    assert sweep_rows < sum(rows) - sweep_rows, "the sweep attacks fewer points than separate calls"
    carried = torch.ones(40, dtype=torch.bool)
    for e in sorted(eps):
        carried &= singles[e]
        assert torch.equal(sweep.robust[eps.index(e)], carried), "eps alone, then monotone: the same flags"
    small, mid = eps.index(0.02), eps.index(0.05)
    broken_small = ~sweep.robust[small] & sweep.clean_correct
    assert broken_small.any()
    assert torch.equal(sweep.x_adv[mid][broken_small], sweep.x_adv[small][broken_small]), \
        "a point broken at a smaller eps keeps that witness"


@pytest.mark.skipif(not HAVE_BUNDLED, reason="bundled backbone missing")
def test_fused_bundled_backbone_matches_on_real_images() -> None:
    g = rtcore.create_backbone("fmnist-cnn-pgd-linf-0.1", device="cpu")
    x = rtcore.load_task("fmnist-novel").x_test[:32]
    twin, rep = fused_copy(g, x)
    assert rep.used and rep.folded == 3 and rep.max_abs_diff < 1e-4


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_step_rule_reaches_the_exact_robust_accuracy(linear_case, norm: str) -> None:
    """The 'strong' preset (APGD step rule, adaptive targeted runs) is exact on the linear models of THEORY.md."""
    assert rtcore.create_strength("strong").step_rule == "apgd"
    eps = [0.0, 0.05, 0.1, 0.2]
    res = rtcore.attack(linear_case.model, linear_case.x, linear_case.y, eps, norm=norm, settings="strong")
    for i, e in enumerate(eps):
        assert torch.equal(res.robust[i], linear_case.exact_robust(e, norm))


def test_apgd_checkpoints_follow_the_paper() -> None:
    from rtcore.attacks.apgd import checkpoints

    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]  # p_j: 0.22, then +max(last gap - 0.03, 0.06)
    assert checkpoints(1) == [] and all(0 < c < 10 for c in checkpoints(10))
    with pytest.raises(ValueError, match="step_rule"):
        AttackSettings(step_rule="adam")
    with pytest.raises(ValueError, match="target_loss"):
        AttackSettings(target_loss="hinge")
    strong = rtcore.create_strength("strong")
    assert strong.key()["step_rule"] == "apgd" and strong.key()["target_loss"] == "dlr"
    assert "step_rule" not in rtcore.create_strength("fast").key(), "fields at their default stay out of the key"
