"""Transfer methods (rtcore.transfer): what each method trains, LP-FT's start, the adapted-model cache,
resumable fine-tuning, tampering, errors, and the method comparison.

Fast on purpose: a tiny random SmallCNN (width 4, 8 features) on 96 synthetic 12x12 images,
1-3 epochs; the whole file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import rtcore
from rtcore.config import eps_key
import rtcore.transfer.adaptation as adapt_module
import rtcore.transfer.finetune as finetune_module
from rtcore import ResultCache, Task
from rtcore._io import tensor_digest
from rtcore.models import Backbone, load_safetensors, load_state_dict_into, module_fingerprint
from rtcore.models.nets import SmallCNN
from rtcore.models.wrapper import _forward_features
from rtcore.cached import fit_probe
from rtcore.runs.compare import compare_methods, kendall_tau_b, ordering_verdict
from rtcore.transfer import (
    TRANSFER_METHODS,
    Adapted,
    FineTuneRecipe,
    adapt,
    network_blocks,
)
from rtcore.transfer.blocks import feature_param_names, trainable_names
from rtcore.transfer.store import BACKBONE_FILE, CARD_FILE, CHECKPOINT_FILE, HEAD_FILE

PROBE = {"C": 1.0}  # a fixed C: no held-out search, so the tests stay fast
RECIPE = FineTuneRecipe(epochs=2, batch_size=32, lr=1e-2)


def tiny_backbone(seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    net = SmallCNN(in_chans=1, width=4, feature_dim=8, num_classes=3)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a change would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return Backbone(net, name="tiny-cnn", input_size=(1, 12, 12), mean=(0.5,), std=(0.5,), features=_forward_features)


def tiny_task(n_train: int = 96, n_test: int = 24) -> Task:
    """Three classes: bright left half, bright right half, bright centre, plus noise."""
    gen = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 3
        x = 0.2 * torch.rand(n, 1, 12, 12, generator=gen)
        x[y == 0, :, :, :6] += 0.6
        x[y == 1, :, :, 6:] += 0.6
        x[y == 2, :, 3:9, 3:9] += 0.6
        return x.clamp(0, 1), y

    (xa, ya), (xb, yb) = split(n_train), split(n_test)
    return Task("tiny-task", xa, ya, xb, yb, ("left", "right", "centre"), "synthetic (tests)")


@pytest.fixture
def g() -> Backbone:
    return tiny_backbone()


@pytest.fixture
def task() -> Task:
    return tiny_task()


@pytest.fixture
def cache(tmp_path: Path) -> ResultCache:
    return ResultCache(tmp_path / "cache")


def run(g: Backbone, task: Task, method: str, cache: ResultCache, **kw: Any) -> Adapted:
    return adapt(g, task, method, cache=cache, recipe=kw.pop("recipe", RECIPE), probe_params=PROBE, **kw)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------ what each method trains

@pytest.mark.parametrize(("method", "k"), [("ft", 1), ("lp-ft", 1), ("ft-last-k", 1), ("ft-last-k", 2)])
def test_each_method_changes_exactly_its_parameters(g: Backbone, task: Task, cache: ResultCache, method: str,
                                                    k: int) -> None:
    before, fp = _state(g.net), g.fingerprint()
    a = run(g, task, method, cache, k=k)
    trained = set(trainable_names(g.net, method, k))
    params = {n for n, _ in g.net.named_parameters()}
    after = a.backbone.net.state_dict()
    assert trained and trained <= params
    for name, t in before.items():
        if name in trained:
            assert not torch.equal(after[name], t), f"{name} should have been trained by {method}"
        else:  # frozen parameters, the unused upstream classifier and every BatchNorm buffer
            assert torch.equal(after[name], t), f"{name} must stay bit-identical under {method}"
    assert module_fingerprint(g.net) == module_fingerprint(tiny_backbone().net) and g.fingerprint() == fp
    assert a.backbone.fingerprint() != fp
    assert not a.backbone.training and not any(p.requires_grad for p in a.backbone.parameters())
    assert a.backbone.input_size == g.input_size and torch.equal(a.backbone.mean, g.mean)
    info = a.info
    assert info.params_trained == sum(dict(g.net.named_parameters())[n].numel() for n in trained)
    assert info.params_trained + info.params_frozen == sum(
        dict(g.net.named_parameters())[n].numel() for n in feature_param_names(g.net))
    assert info.weight_distance > 0 and math.isclose(info.weight_distance, math.sqrt(sum(
        v ** 2 for b, v in info.block_distance.items() if b != "total")), rel_tol=1e-9)
    blocks = network_blocks(g.net)
    frozen_blocks = [b.name for b in blocks if not set(b.params) & trained]
    assert all(info.block_distance[b] == 0.0 for b in frozen_blocks)
    assert list(info.blocks_trained) == [b.name for b in blocks if set(b.params) & trained]
    assert a.head.weight_.shape == (3, 8) and info.final_loss < math.log(3)  # below a zero head's loss


def test_lp_keeps_the_backbone_and_fits_the_probe(g: Backbone, task: Task, cache: ResultCache) -> None:
    a = run(g, task, "lp", cache)
    assert a.backbone is g and a.info.weight_distance == 0.0 and a.info.params_trained == 0
    probe = fit_probe(g, task, cache, "logistic", **PROBE)
    assert torch.equal(a.head.weight_, probe.weight_) and torch.equal(a.head.bias_, probe.bias_)


def test_blocks_of_the_small_cnn_and_of_a_timm_model() -> None:
    net = tiny_backbone().net
    assert [b.name for b in network_blocks(net)] == ["body.0", "body.1", "body.2", "fc"]
    assert network_blocks(net)[0].params == ("body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias")
    assert not any(n.startswith("classifier") for n in feature_param_names(net))
    timm = pytest.importorskip("timm")
    resnet = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    assert [b.name for b in network_blocks(resnet)] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]


def test_ft_last_k_with_every_block_equals_ft(g: Backbone, task: Task, cache: ResultCache) -> None:
    recipe = FineTuneRecipe(epochs=1, batch_size=48)
    ft = run(g, task, "ft", cache, recipe=recipe)
    last = run(g, task, "ft-last-k", cache, k=len(network_blocks(g.net)), recipe=recipe)
    assert ft.info.key != last.info.key and ft.backbone.fingerprint() == last.backbone.fingerprint()
    assert torch.equal(ft.head.weight_, last.head.weight_)


# ------------------------------------------------------------------ LP-FT starts from the probe

def test_lp_ft_starts_from_the_fitted_probe(g: Backbone, task: Task, cache: ResultCache,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    make = finetune_module._optimizer

    def spy(recipe, body, head):  # type: ignore[no-untyped-def]
        seen.append((head[0].detach().clone(), head[1].detach().clone()))  # the head before the first step
        return make(recipe, body, head)

    monkeypatch.setattr(finetune_module, "_optimizer", spy)
    a = run(g, task, "lp-ft", cache)
    probe = fit_probe(g, task, cache, "logistic", **PROBE)
    assert len(seen) == 1
    assert torch.equal(seen[0][0], probe.weight_) and torch.equal(seen[0][1], probe.bias_)
    assert a.info.head_init == "probe" and a.info.head_init_digest == tensor_digest(probe.weight_, probe.bias_)
    assert not torch.equal(a.head.weight_, probe.weight_)  # and then it was fine-tuned
    ft = run(g, task, "ft", cache)
    assert ft.info.head_init == "zeros"


# ------------------------------------------------------------------ cache, resume, tampering

def test_adapted_models_are_cached_and_reused(g: Backbone, task: Task, cache: ResultCache,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(g, task, "ft", cache)
    assert not first.info.from_cache and first.info.path is not None

    def no_training(*a: object, **kw: object) -> None:
        raise AssertionError("the cached adapted model should have been reused")

    monkeypatch.setattr(adapt_module, "finetune", no_training)
    again = run(g, task, "ft", cache)
    assert again.info.from_cache and again.backbone.fingerprint() == first.backbone.fingerprint()
    assert torch.equal(again.head.weight_, first.head.weight_) and torch.equal(again.head.bias_, first.head.bias_)
    assert again.info.weight_distance == first.info.weight_distance and again.info.seconds == first.info.seconds
    card = json.loads((cache.root / "adapted" / first.info.key / CARD_FILE).read_text())
    assert card["method"] == "ft" and card["recipe"]["epochs"] == RECIPE.epochs and card["seed"] == 0
    assert card["fingerprint"] == first.backbone.fingerprint() and not (cache.root / "adapted" / first.info.key /
                                                                      CHECKPOINT_FILE).exists()
    # the stored weights are a plain checkpoint of the base architecture
    net = tiny_backbone().net
    load_state_dict_into(net, load_safetensors(cache.root / "adapted" / first.info.key / BACKBONE_FILE), "adapted")
    assert module_fingerprint(net) == module_fingerprint(first.backbone.net)
    with pytest.raises(AssertionError, match="reused"):  # a different recipe is a different model
        run(g, task, "ft", cache, recipe=FineTuneRecipe(epochs=1, batch_size=32))


def test_a_killed_finetune_resumes_from_its_last_epoch_bit_for_bit(g: Backbone, task: Task, tmp_path: Path) -> None:
    recipe = FineTuneRecipe(epochs=3, batch_size=32)
    whole = adapt(g, task, "lp-ft", cache=ResultCache(tmp_path / "a"), recipe=recipe, probe_params=PROBE)
    cache = ResultCache(tmp_path / "b")

    class Killed(Exception):
        pass

    def kill_after_epoch_1(f: float) -> None:
        if f >= 1 / 3:
            raise Killed

    with pytest.raises(Killed):
        adapt(g, task, "lp-ft", cache=cache, recipe=recipe, probe_params=PROBE, progress=kill_after_epoch_1)
    folder = next((cache.root / "adapted").iterdir())
    assert (folder / CHECKPOINT_FILE).is_file() and not (folder / CARD_FILE).exists()
    seen: list[float] = []
    resumed = adapt(g, task, "lp-ft", cache=cache, recipe=recipe, probe_params=PROBE, progress=seen.append)
    assert resumed.info.resumed_from_epoch == 1 and not resumed.info.from_cache
    # only epochs 2 and 3 ran: 3 batches each, reported per batch (the last one after the checkpoint)
    assert seen == pytest.approx([0.0, 3 / 9, 4 / 9, 5 / 9, 6 / 9, 7 / 9, 8 / 9, 1.0, 1.0])
    a, b = whole.backbone.net.state_dict(), resumed.backbone.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(whole.head.weight_, resumed.head.weight_) and torch.equal(whole.head.bias_, resumed.head.bias_)
    assert not (folder / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("target", [BACKBONE_FILE, HEAD_FILE, CARD_FILE])
def test_a_tampered_adapted_model_is_refused_and_recomputed(g: Backbone, task: Task, cache: ResultCache,
                                                            target: str) -> None:
    first = run(g, task, "ft-last-k", cache, k=2)
    path = cache.root / "adapted" / first.info.key / target
    data = bytearray(path.read_bytes())
    if target == CARD_FILE:
        card = json.loads(data)
        card["sha256"][BACKBONE_FILE] = "0" * 64
        data = bytearray(json.dumps(card).encode())
    else:
        data[-3] ^= 0x01  # one bit of the last tensor's bytes
    path.write_bytes(bytes(data))
    again = run(g, task, "ft-last-k", cache, k=2)
    assert not again.info.from_cache
    assert [r for r in cache.rejected if "adapted" in r.path]
    assert again.backbone.fingerprint() == first.backbone.fingerprint()  # recomputed, deterministic
    assert torch.equal(again.head.weight_, first.head.weight_)
    assert run(g, task, "ft-last-k", cache, k=2).info.from_cache


def test_a_tampered_checkpoint_is_refused_and_training_restarts(g: Backbone, task: Task, cache: ResultCache) -> None:
    class Killed(Exception):
        pass

    def kill(f: float) -> None:
        if f >= 0.5:
            raise Killed

    with pytest.raises(Killed):
        run(g, task, "ft", cache, progress=kill)
    ckpt = next((cache.root / "adapted").iterdir()) / CHECKPOINT_FILE
    data = bytearray(ckpt.read_bytes())
    data[-3] ^= 0x01
    ckpt.write_bytes(bytes(data))
    resumed = run(g, task, "ft", cache)
    assert resumed.info.resumed_from_epoch == 0 and any("checkpoint" in r.reason for r in cache.rejected)


# ------------------------------------------------------------------ errors

def test_errors_name_the_value_and_the_fix(g: Backbone, task: Task, cache: ResultCache) -> None:
    with pytest.raises(ValueError, match=r"'full-ft'.*unknown.*'ft-last-k'"):
        adapt(g, task, "full-ft", cache=cache)
    with pytest.raises(ValueError, match=r"k=5 is out of range.*4 blocks.*1\.\.4"):
        adapt(g, task, "ft-last-k", k=5, cache=cache)
    with pytest.raises(ValueError, match=r"k=0 is out of range"):
        adapt(g, task, "ft-last-k", k=0, cache=cache)
    with pytest.raises(ValueError, match=r"k=2 applies to method 'ft-last-k' only"):
        adapt(g, task, "ft", k=2, cache=cache)
    with pytest.raises(ValueError, match=r"probe='svm' is unknown"):
        adapt(g, task, "lp", probe="svm", cache=cache)
    with pytest.raises(ValueError, match=r"epochs=0 must be an int >= 1"):
        FineTuneRecipe(epochs=0)
    with pytest.raises(ValueError, match=r"optimizer='adam' is unknown; use 'adamw' or 'sgd'"):
        FineTuneRecipe(optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must be a rtcore Backbone"):
        adapt(torch.nn.Linear(2, 2), task, "ft", cache=cache)  # type: ignore[arg-type]


def test_sgd_recipe_and_disabled_cache(g: Backbone, task: Task) -> None:
    off = ResultCache(enabled=False)
    recipe = FineTuneRecipe(epochs=1, batch_size=48, optimizer="sgd", lr=0.01)
    a = adapt(g, task, "ft", cache=off, recipe=recipe, probe_params=PROBE)
    b = adapt(g, task, "ft", cache=off, recipe=recipe, probe_params=PROBE)
    assert a.info.path is None and not b.info.from_cache and a.info.weight_distance > 0
    assert a.backbone.fingerprint() == b.backbone.fingerprint()


# ------------------------------------------------------------------ comparison of methods

def test_compare_methods_relations(g: Backbone, task: Task, cache: ResultCache) -> None:
    stages: list[tuple[str, float]] = []
    recipe = FineTuneRecipe(epochs=1, batch_size=48)
    res = compare_methods(g, task, [0.0, 4 / 255], "linf", 16, methods=["ft", "lp", "ft-last-k"], k=2,
                          attack="fast", cache=cache, recipe=recipe, head_attack=False, loss_attack=False,
                          progress=lambda ev: stages.append((ev.stage, ev.fraction)))
    s = res.summary
    assert sorted(s["method"].unique()) == ["ft", "ft-last-2", "lp"] and len(s) == 6
    assert (s["bound"] <= s["robust_acc"] + 1e-12).all() and (s["robust_acc"] <= s["clean_acc"] + 1e-12).all()
    lp = s[s["method"] == "lp"]
    assert (lp["mean_delta"] == lp["mean_delta_base"]).all() and (lp["bound"] == lp["bound_pre"]).all()
    assert ((lp["mean_relative_delta"] - lp["mean_relative_delta_base"]).abs() < 1e-12).all()
    assert (lp["weight_distance"] == 0).all() and (s[s["method"] != "lp"]["weight_distance"] > 0).all()
    at0 = s[s["eps"] == 0]
    assert (at0["bound"] == at0["clean_acc"]).all() and (at0["mean_delta_base"] == 0).all()
    assert set(res.infos) == {"ft", "ft-last-2", "lp"} and stages[-1] == ("done", 1.0)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions)
    v = ordering_verdict(s, 4 / 255)
    assert v.best and v.predicted_best and v.agrees == bool(set(v.best) & set(v.predicted_best))
    with pytest.raises(ValueError, match=r"eps=0.5 is not in the summary"):
        ordering_verdict(s, 0.5)
    with pytest.raises(ValueError, match="repeats a method"):
        compare_methods(g, task, [0.0], methods=["ft", "ft"], cache=cache)


def test_kendall_tau_b() -> None:
    assert kendall_tau_b([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))
    assert -1 < kendall_tau_b([1, 2, 2], [1, 2, 3]) < 1


def test_methods_constant() -> None:
    assert TRANSFER_METHODS == ("lp", "ft", "lp-ft", "ft-last-k")


@pytest.mark.parametrize("method", ["ft", "lp-ft", "ft-last-k"])
def test_transfer_is_a_parameter_of_evaluate_and_every_relation_holds(g: Backbone, task: Task, method: str,
                                                                      tmp_path: Path) -> None:
    ev = rtcore.run_evaluation(g, task, [0.0, 2 / 255, 8 / 255], "linf", n=24, attack="fast", transfer=method,
                               transfer_k=2 if method == "ft-last-k" else None, cache_dir=str(tmp_path))
    df = ev.summary
    assert set(df["transfer"]) == {method if method != "ft-last-k" else "ft-last-2"} and set(df["probe"]) == {"fine-tuned"}
    assert (df["bound"] <= df["bound_head"] + 1e-12).all() and (df["bound_head"] <= df["robust_acc"] + 1e-12).all()
    assert (df["robust_acc"] <= df["clean_acc"] + 1e-12).all()
    assert (df["adv_loss"] <= df["loss_bound_lse"] + 1e-9).all()
    base = rtcore.run_evaluation(g, task, [8 / 255], "linf", n=24, attack="fast", cache_dir=str(tmp_path))
    assert set(base["transfer"] if isinstance(base, pd.DataFrame) else base.summary["transfer"]) == {"lp"}
    with pytest.raises(ValueError, match="transfer='finetune' is unknown"):
        rtcore.run_evaluation(g, task, [0.01], n=4, transfer="finetune", cache_dir=str(tmp_path))


def test_cli_takes_the_transfer_method() -> None:
    from rtcore.cli import build_parser

    cmd = rtcore.cli_command("fmnist-cnn-standard", ["shapes"], [2 / 255], "linf", 50, transfer="ft-last-k", transfer_k=2)
    from rtcore.runs.fields import namespace_values

    given = namespace_values(build_parser().parse_args(cmd.split()[3:]), rtcore.EvalSpec)
    assert given["transfer"] == "ft-last-k" and given["transfer_k"] == 2 and given["eps"] == ["2/255"]


def test_a_comparison_reproduces_from_its_sweep_file(tiny_task: str, tmp_path: Path) -> None:
    """What compare_methods (the dashboard's transfer page) shows for each method is what the sweep file
    comparison_sweep writes computes: the same numbers, from a spec anyone can rerun."""
    import tomllib

    from rtcore.runs import TransferRequest
    from rtcore.runs.compare import comparison_sweep, compare_methods
    from rtcore.runs.reproduce import comparison_toml
    from rtcore.runs.sweep import sweep

    cache = rtcore.ResultCache(str(tmp_path / "cache"))
    g = rtcore.create_backbone("fmnist-cnn-standard", device="cpu")
    task = rtcore.create_task(tiny_task, cache_dir=str(cache.root))
    eps = [0.0, 2 / 255]
    recipe = rtcore.FineTuneRecipe(epochs=1)
    shown = compare_methods(g, task, eps, "linf", 24, methods=["lp", "ft"], attack="fast", cache=cache,
                            recipe=recipe).summary
    table = comparison_sweep(rtcore.BackboneRef("fmnist-cnn-standard"), tiny_task, ["lp", "ft"], eps, "linf", 24,
                             recipe=recipe)
    assert table["finetune"] == {"epochs": 1} and table["transfers"] == ["lp", "ft"]
    # the file the dashboard's transfer page downloads for the same comparison, run from disk
    request = TransferRequest(rtcore.BackboneRef("fmnist-cnn-standard"), tiny_task, ("lp", "ft"), 1, tuple(eps), "linf",
                              24, "fast", 1, str(cache.root))
    (tmp_path / "comparison.toml").write_text(comparison_toml(request))
    assert tomllib.loads((tmp_path / "comparison.toml").read_text()) == table
    rerun = sweep(tmp_path / "comparison.toml", tmp_path / "sweep", cache_dir=str(tmp_path / "fresh-cache")).summary
    cols = ["clean_acc", "robust_acc", "bound", "bound_head", "mean_delta", "adv_loss"]
    for method in ("lp", "ft"):
        a = shown[shown["method"] == method].sort_values("eps")[cols].reset_index(drop=True)
        b = rerun[rerun["transfer"] == method].sort_values("eps")[cols].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
