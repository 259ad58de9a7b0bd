"""Inputs are coerced (numpy scalars) or refused with a message naming the value and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import rtcore
from rtcore.config import check_eps, eps_equal, eps_key
from rtcore.validation import check_count, check_seed, check_task_names


def test_numpy_and_torch_scalars_are_accepted() -> None:
    assert check_eps(np.float32(0.25)) == ((0.25,), True)
    assert check_eps(np.float64(0.1)) == ((0.1,), True)
    assert check_eps(torch.tensor(0.5)) == ((0.5,), True)
    assert check_eps(np.array([0.0, 0.5])) == ((0.0, 0.5), False)
    assert check_count(np.int64(200)) == 200 and check_seed(np.int32(3)) == 3


@pytest.mark.parametrize("bad, words", [("0.1", "string"), ("8/255", "8/255"), ([0.1, "x"], "string"),
                                        (True, "bool"), (None, "not a number"), (float("nan"), "finite"),
                                        (2.0, "above 1"), (-0.1, "negative"), ([], "empty")])
def test_bad_eps_is_refused_with_the_fix(bad, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=words):
        check_eps(bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "200", True, None])
def test_bad_n_is_refused(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="positive integer"):
        check_count(bad)


@pytest.mark.parametrize("bad", [2**70, -1, 1.5, "0"])
def test_seed_range_is_checked(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="seed"):
        check_seed(bad)


def test_a_single_task_name_is_one_task() -> None:
    assert check_task_names("shapes") == ["shapes"]
    assert check_task_names(["shapes", "glyphs"]) == ["shapes", "glyphs"]
    with pytest.raises(ValueError, match="empty"):
        check_task_names([])
    with pytest.raises(ValueError, match="neither"):
        check_task_names([3])


def test_evaluate_takes_numpy_scalars_and_a_single_task_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = rtcore.evaluate("fmnist-cnn-standard", "shapes", np.float32(1 / 255), "linf", np.int64(6), attack="fast",
                         seed=np.int64(0), cache_dir=str(tmp_path))
    assert df["task"].tolist() == ["shapes"] and df["n"].tolist() == [6]
    with pytest.raises(ValueError, match="seed"):
        rtcore.evaluate("fmnist-cnn-standard", "shapes", 0.01, n=4, seed=2**70, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="eps='one percent' is not a number"):
        rtcore.evaluate("fmnist-cnn-standard", "shapes", "one percent", n=4, cache_dir=str(tmp_path))
    text = rtcore.evaluate("fmnist-cnn-standard", "shapes", ["1/255"], "linf", 6, attack="fast", cache_dir=str(tmp_path))
    pd.testing.assert_frame_equal(text.drop(columns="seconds"), df.drop(columns="seconds"))  # as in a spec file


def test_eps_matching_is_one_rule() -> None:
    assert eps_equal(0.1 + 0.2, 0.3) and not eps_equal(1 / 255, 2 / 255)
    assert eps_key(-0.0) == 0.0 and str(eps_key(-0.0)) == "0.0"


@pytest.mark.parametrize("delta", [torch.tensor([-1.0, 0.0]), torch.tensor([float("nan"), 0.0]),
                                   torch.tensor([float("inf"), 0.0])])
def test_loss_bound_and_criterion_refuse_bad_delta(delta: torch.Tensor) -> None:
    f, y = torch.randn(2, 3), torch.tensor([0, 1])
    W, b = torch.randn(2, 3), torch.zeros(2)
    with pytest.raises(ValueError, match="delta"):
        rtcore.loss_bound(f, y, W, b, delta)
    with pytest.raises(ValueError, match="delta"):
        rtcore.bound_criterion(f, y, W, b, delta)


def test_backbone_returning_one_number_per_image_is_a_clear_error() -> None:
    g = rtcore.as_backbone(torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.Identity()), name="flat")
    with pytest.raises(ValueError, match=r"\(N, m\)"):
        g(torch.rand(3, 1, 2, 2))
    g2 = rtcore.as_backbone(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1), torch.nn.Flatten(0)),
                            name="scalar")
    with pytest.raises(ValueError, match="one feature vector per image"):
        g2(torch.rand(3, 1, 2, 2))


def test_an_l2_eps_may_exceed_one_but_a_linf_eps_may_not() -> None:
    assert check_eps(1.6, "l2") == ((1.6,), True)
    with pytest.raises(ValueError, match="above 1"):
        check_eps(1.6, "linf")
    with pytest.raises(ValueError, match="0-255"):
        check_eps(300.0, "l2")


@pytest.mark.parametrize("option", [{"transfer": "ft"}, {"transfer": "lp-ft"}, {"probe_C": 1.0}])
def test_a_given_head_with_options_it_would_ignore_is_refused(option: dict[str, object]) -> None:
    from tests.conftest import LinearCase

    c = LinearCase(0)
    head = rtcore.LinearProbe.from_weights(c.W, c.b)
    task = rtcore.Task(name="t", x_train=c.x, y_train=c.y, x_test=c.x, y_test=c.y, classes=tuple("abcd"), source="x")
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"a given head replaces the probe fit and the adaptation, so {name}="):
        rtcore.run_evaluation(c.backbone, [task], [0.01], "linf", n=8, attack="fast", head=head, use_cache=False,
                              **option)
