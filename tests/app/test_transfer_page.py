"""The "Transfer methods" page (pages/7_transfer.py) and its logic (app/transfer_view.py).

Nothing heavy runs: the page is checked before the user opts in, and with a finished job whose
result comes from a tiny random SmallCNN on a synthetic task (see tests/unit/test_transfer.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import transfer_view as tv
from rtcore import ResultCache, create_backbone
from rtcore.runs import MethodComparison, compare_methods
from rtcore.transfer import FineTuneRecipe
from tests.unit.test_transfer import tiny_backbone, tiny_task

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "7_transfer.py")
BACKBONE = "fmnist-cnn-standard"
SESSION = {"backbone": BACKBONE, "norm": "linf", "eps": 0.03, "n": 20, "attack": "fast", "tasks": ["shapes"]}


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> MethodComparison:
    cache = ResultCache(tmp_path_factory.mktemp("transfer-page"))
    return compare_methods(tiny_backbone(), tiny_task(), [0.0, 0.01, 0.03], "linf", 12, k=2, attack="fast",
                           cache=cache, recipe=FineTuneRecipe(epochs=1, batch_size=48), head_attack=False,
                           loss_attack=False)


class DoneJob:
    """A finished job (what TransferJob looks like once its thread has ended)."""

    done, error, elapsed = True, None, 1.0

    def __init__(self, result: MethodComparison) -> None:
        self.result = result

    def progress(self) -> tuple[float, str]:
        return 1.0, "done"

    def wait(self, timeout: float) -> bool:
        return True


def new_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    for key, value in SESSION.items():
        at.session_state[key] = value
    return at


def test_view_tables_and_figures(comparison: MethodComparison) -> None:
    eps = tv.nearest_eps(comparison.summary, 0.028)
    assert eps == 0.03
    table = tv.method_summary(comparison, eps)
    assert list(table["method"]) == ["lp", "ft", "lp-ft", "ft-last-2"]
    assert (table["bound"] <= table["robust (attack)"] + 1e-12).all()
    moved = tv.movement_table(comparison)
    assert moved.loc[moved["method"] == "lp", "total"].item() == 0
    assert moved.loc[moved["method"] == "ft-last-2", "block body.0"].item() == 0
    assert "most robust" in tv.verdict_text(comparison, eps)
    acc, delta, bars = (tv.accuracy_curves(comparison.summary, eps), tv.delta_curves(comparison.summary, eps),
                        tv.block_distance_bars(comparison))
    assert len(acc.data) == 8 and len(delta.data) == 5 and len(bars.data) == 4
    assert delta.data[-1].name == "base backbone (before)"


def test_make_request_checks_its_input() -> None:
    g = create_backbone(BACKBONE, "cpu")
    r = tv.make_request(g, "shapes", ["ft", "lp"], 1, [0.03, 0.0, 0.03], "linf", 20, "fast", 2)
    assert r.methods == ("lp", "ft") and r.eps == (0.0, 0.03) and r.backbone_id == g.fingerprint()
    with pytest.raises(ValueError, match="k=9 is out of range.*4 blocks"):
        tv.make_request(g, "shapes", ["ft-last-k"], 9, [0.03], "linf", 20, "fast", 2)
    with pytest.raises(ValueError, match="non-empty selection"):
        tv.make_request(g, "shapes", [], 1, [0.03], "linf", 20, "fast", 2)
    with pytest.raises(ValueError, match="epochs=0"):
        tv.make_request(g, "shapes", ["ft"], 1, [0.03], "linf", 20, "fast", 0)


def test_page_waits_for_the_user_before_computing() -> None:
    at = new_page().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert [b.key for b in at.button] == ["transfer_run"]
    assert not at.get("plotly_chart")


def test_page_draws_a_finished_comparison(comparison: MethodComparison) -> None:
    g = create_backbone(BACKBONE)
    methods = ["lp", "ft", "lp-ft", "ft-last-k"]
    request = tv.make_request(g, "shapes", methods, 1, tv.eps_values("linf", 0.03), "linf", 20, "fast",
                              FineTuneRecipe.epochs)
    tv._JOBS[request] = DoneJob(comparison)  # type: ignore[assignment]
    try:
        at = new_page().run()
    finally:
        tv._JOBS.pop(request, None)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any("Robust accuracy" in t for t in titles) and any("Mean Δ" in t for t in titles)
    assert any("moved each block" in t for t in titles)
    assert len(at.dataframe) == 2 and "most robust" in at.info[0].value
