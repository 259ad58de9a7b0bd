"""The attack base's invariants, checked for every attack: inside the ball and [0, 1], monotone in
eps, witnesses carried over, keep-best, early stop; and the shared loop with each step rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise

import pytest
import torch
from torch import nn

import rtcore
from rtcore.attacks import AttackSettings, attack, feature_attack, loss_attack
from rtcore.bounds import head_projector

EPS = [0.2, 0.0, 0.02, 0.1, 0.05]  # unsorted on purpose
FAST = AttackSettings(steps=6, restarts=1, feature_restarts=2, losses=("ce", "margin"), targets=1)


@dataclass
class Case:
    """A small CNN backbone + linear head on 6x6 images, some pixels on the box edges."""

    backbone: rtcore.Backbone
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    W: torch.Tensor


def _case(seed: int = 0) -> Case:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 6)).eval()
    bb = rtcore.as_backbone(net)
    W = torch.randn(5, 6)
    model = rtcore.ProbedModel(bb, rtcore.LinearHead(W, torch.zeros(5)))
    x = torch.rand(24, 1, 6, 6)
    x[:4] = 0.0  # on the box edge: clipping binds
    x[4:6] = 1.0
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 5  # a few misclassified points
    return Case(bb, model, x, y, W)


@dataclass(frozen=True)
class Kind:
    """One attack as the base sees it: how to call it, its value per (eps, point), which way is better."""

    name: str
    call: Callable[[Case, list[float], str, AttackSettings | str], object]
    value: Callable[[object], torch.Tensor]  # (E, N): larger is better for the attacker
    stops: bool  # stops a point once it is broken (eps in increasing order, broken points skipped)


def _e2e_value(r: object) -> torch.Tensor:
    return (~r.robust).float()  # type: ignore[attr-defined]


KINDS = [
    Kind("feature", lambda c, e, n, s: feature_attack(c.backbone, c.x, e, norm=n, settings=s),
         lambda r: r.delta, False),  # type: ignore[attr-defined]
    Kind("head-subspace", lambda c, e, n, s: feature_attack(c.backbone, c.x, e, norm=n, settings=s,
                                                          projector=head_projector(c.W).float()),
         lambda r: r.delta, False),  # type: ignore[attr-defined]
    Kind("end-to-end", lambda c, e, n, s: attack(c.model, c.x, c.y, e, norm=n, settings=s), _e2e_value, True),
    Kind("loss", lambda c, e, n, s: loss_attack(c.model, c.x, c.y, e, norm=n, settings=s),
         lambda r: r.loss, False),  # type: ignore[attr-defined]
]
#: every end-to-end search rtcore has: the fixed plan with each step rule, and the adaptive plan
E2E_SETTINGS = {
    "fixed-cosine": FAST,
    "fixed-apgd": AttackSettings(steps=6, losses=("ce",), targets=2, step_rule="apgd", target_loss="dlr"),
    "adaptive": AttackSettings(steps=6, losses=("ce",), targets=3, plan="adaptive", step_rule="apgd",
                               target_loss="dlr"),
}
ATTACKS = [(k, FAST) for k in KINDS if k.name != "end-to-end"] + [
    (KINDS[2], s) for s in E2E_SETTINGS.values()]
IDS = [k.name for k in KINDS if k.name != "end-to-end"] + [f"end-to-end-{n}" for n in E2E_SETTINGS]


def _dist(xa: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    d = (xa - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize(("kind", "settings"), ATTACKS, ids=IDS)
def test_inside_the_ball_monotone_and_carried_over(kind: Kind, settings: AttackSettings, norm: str) -> None:
    case = _case()
    eps = EPS if norm == "linf" else [2 * e for e in EPS]
    res = kind.call(case, eps, norm, settings)
    xa, value = res.x_adv, kind.value(res)  # type: ignore[attr-defined]
    assert xa.shape == (len(eps), *case.x.shape) and value.shape == (len(eps), case.x.shape[0])
    for i, e in enumerate(eps):
        assert float(_dist(xa[i], case.x, norm).max()) <= e * (1 + 1e-5) + 1e-6, "inside the ball"
        assert float(xa[i].min()) >= 0 and float(xa[i].max()) <= 1, "inside [0, 1]"
        if e == 0:
            assert torch.equal(xa[i], case.x), "eps = 0 is the clean input"
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    for a, b in pairwise(order):
        assert bool((value[b] >= value[a]).all()), "monotone in eps"
        if kind.stops:  # carry-over: a point broken at a smaller eps keeps that witness, never attacked again
            broken = value[a] > 0
            assert torch.equal(xa[b][broken], xa[a][broken]), "broken points keep their witness"


@pytest.mark.parametrize(("kind", "settings"), ATTACKS, ids=IDS)
def test_reported_values_are_recomputed_from_the_witness_and_never_worse_than_clean(kind: Kind,
                                                                                   settings: AttackSettings) -> None:
    case = _case(1)
    res = kind.call(case, [0.05], "linf", settings)
    xa = res.x_adv[0]  # type: ignore[attr-defined]
    with torch.no_grad():
        if kind.name in ("feature", "head-subspace"):
            shift = case.backbone(xa) - case.backbone(case.x)
            if kind.name == "head-subspace":
                shift = shift @ head_projector(case.W).float()
            assert torch.allclose(res.delta[0], shift.norm(dim=1), atol=1e-5)  # type: ignore[attr-defined]
            assert bool((res.delta[0] > 0).all()), "an attack moves every point's features"  # type: ignore[attr-defined]
        elif kind.name == "loss":
            ce = nn.functional.cross_entropy(case.model(xa), case.y, reduction="none")
            clean = nn.functional.cross_entropy(case.model(case.x), case.y, reduction="none")
            assert torch.allclose(res.loss[0], ce, atol=1e-5)  # type: ignore[attr-defined]
            assert bool((res.loss[0] >= clean - 1e-6).all()), "keep-best: never below the clean loss"  # type: ignore[attr-defined]
        else:
            pred = case.model(xa).argmax(1)
            assert torch.equal(res.robust[0], (pred == case.y) & res.clean_correct)  # type: ignore[attr-defined]
            assert not bool(res.robust[0][:3].any()), "misclassified points are never robust"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kind", "settings"), ATTACKS, ids=IDS)
def test_one_eps_alone_equals_the_same_eps_in_a_sweep_for_attacks_that_do_not_stop(kind: Kind,
                                                                                   settings: AttackSettings) -> None:
    """Every row's start is seeded by (seed, run, point, eps): an eps alone gives the same witness
    as in a sweep (for the attacks that stop, the sweep skips broken points: see test_fused)."""
    case = _case(2)
    alone = kind.value(kind.call(case, [0.05], "linf", settings))[0]
    res = kind.call(case, [0.02, 0.05], "linf", settings)
    sweep, xa = kind.value(res), res.x_adv  # type: ignore[attr-defined]
    if kind.stops:
        assert bool((sweep[1] >= alone).all()), "the sweep carries smaller-eps witnesses: never weaker"
    else:
        # the monotone carry-over: the sweep takes the smaller eps's witness where it is better
        assert torch.allclose(sweep[1], torch.maximum(alone, sweep[0]), atol=1e-5)
        took = sweep[0] > alone + 1e-5
        assert torch.equal(xa[1][took], xa[0][took]), "the carried value comes with its witness"


class _Counting(nn.Module):
    """Counts the rows that go through the model with a gradient, per input row (by a marker pixel)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.grad_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_rows += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("settings", list(E2E_SETTINGS.values()), ids=list(E2E_SETTINGS))
def test_end_to_end_attacks_never_work_on_broken_points(settings: AttackSettings) -> None:
    """Points misclassified without a perturbation cost nothing; broken points stop at once."""
    case = _case(3)
    with torch.no_grad():
        wrong = (case.model(case.x).argmax(1) + 1) % 5  # every point misclassified
    counted = _Counting(case.model).eval()
    res = attack(counted, case.x, wrong, [0.05, 0.1], settings=replace(settings, fuse=False))
    assert counted.grad_rows == 0 and not bool(res.robust.any())


def _plain(net: nn.Module, W: torch.Tensor, b: torch.Tensor) -> nn.Module:
    """``W net(x) + b`` as plain modules: no backbone pads the chunks, so no later run starts early and
    the rows counted are exactly those of the runs the plan asks for."""
    head = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        head.weight.copy_(W)
        head.bias.copy_(b)
    return nn.Sequential(net, head).eval()


@pytest.fixture
def no_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adaptive plan without its give-up rules, so that every run goes its full length."""
    from rtcore.attacks import adaptive

    monkeypatch.setattr(adaptive, "SCREEN_GIVE_UP", ())
    monkeypatch.setattr(adaptive, "TARGET_GIVE_UP", ())


def _far_and_close() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from tests.conftest import LinearNet

    W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [-1.0, -1.0]])
    A = torch.zeros(2, 4)
    A[0, 0], A[1, 1] = 1.0, 1.0
    x = torch.full((2, 1, 2, 2), 0.5)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.99, 0.525  # class 0 by 0.49 (far) and by 0.025 (close) over class 1
    return _plain(LinearNet(A), W, torch.zeros(4)), x, torch.zeros(2, dtype=torch.long)


@pytest.mark.usefixtures("no_give_up")
def test_the_adaptive_plan_spends_its_runs_only_on_points_close_to_a_boundary() -> None:
    """A far-robust point (huge margin) gets the screen only; one close to the boundary also gets targeted runs."""

    model, x, y = _far_and_close()
    counted = _Counting(model).eval()
    cfg = AttackSettings(e2e_steps=8, losses=("ce",), targets=3, plan="adaptive", step_rule="apgd", fuse=False)
    rows_per_point = []
    for i in range(2):
        counted.grad_rows = 0
        attack(counted, x[i:i + 1], y[i:i + 1], 0.01, settings=cfg)
        rows_per_point.append(counted.grad_rows)
    # both stay robust at eps 0.01 (the margin moves by at most 0.02); the screen has half the 8 steps, the
    # ranking of the targets one pass with a gradient, each targeted run 8 steps
    screen = cfg.screening_steps
    assert screen == 4
    assert rows_per_point[0] == screen + 1, "far point: the screen only"
    assert rows_per_point[1] == screen + 1 + 8, "close point: one targeted run (the only class within reach)"


def test_the_screen_gives_up_on_a_point_whose_margin_holds() -> None:
    """After a fifth of a 10-step screen the far point has kept more than 60 % of its margin: it gives up at its
    third iterate (two steps), with no ranking and no targets; the close point (0.02 of 0.025 can go) runs on."""
    from rtcore.attacks import adaptive

    model, x, y = _far_and_close()
    counted = _Counting(model).eval()
    cfg = AttackSettings(e2e_steps=8, screen_steps=10, losses=("ce",), targets=3, plan="adaptive", step_rule="apgd",
                         fuse=False)
    counted.grad_rows = 0
    attack(counted, x[:1], y[:1], 0.01, settings=cfg)
    assert adaptive.SCREEN_GIVE_UP[0] == (0.2, 0.6) and counted.grad_rows == 3
    counted.grad_rows = 0
    attack(counted, x[1:], y[1:], 0.01, settings=cfg)
    assert counted.grad_rows > 10, "the close point: the whole screen, the ranking and a targeted run"


@pytest.mark.usefixtures("no_give_up")
def test_further_targets_only_for_points_the_nearest_target_run_brought_close() -> None:
    """Two classes are within linearised reach, but the box [0, 1] blocks half the way: the run on the nearest
    target leaves 35 % of the clean margin (more than FOLLOW_UP), so the second target is not tried."""
    from rtcore.attacks import adaptive
    from tests.conftest import LinearNet

    W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.99], [-1.0, -1.0]])
    A = torch.zeros(2, 4)
    A[0, 0], A[1, 1] = 1.0, 1.0
    model = _plain(LinearNet(A), W, torch.tensor([0.52, 0.0, 0.0, 0.0]))
    x = torch.full((1, 1, 2, 2), 0.5)
    x[0, 0, 0, 0] = 0.0  # z = (0.52, 0.5, 0.495, -0.5): class 0 by 0.02 over class 1, by 0.025 over class 2
    y = torch.zeros(1, dtype=torch.long)
    counted = _Counting(model).eval()
    cfg = AttackSettings(e2e_steps=8, losses=("ce",), targets=3, plan="adaptive", step_rule="apgd", fuse=False)
    res = attack(counted, x, y, 0.013, settings=cfg)
    assert bool(res.robust.all()), "x00 cannot go below 0: the margin to class 1 stays >= 0.02 - 0.013"
    assert counted.grad_rows == cfg.screening_steps + 1 + 8, "screen, ranking, the nearest target only"
    assert adaptive.FOLLOW_UP < 0.35
