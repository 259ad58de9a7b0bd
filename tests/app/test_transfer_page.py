"""The "Transfer methods" page (pages/7_transfer.py) and its job (app/transfer_view.py).

Nothing heavy runs: the page is checked before the user opts in, and with the comparison of a tiny random
SmallCNN on a synthetic task (see tests/unit/test_transfer.py) standing in for the library's compare_methods.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import rtcore.runs.jobs
from app import jobs
from app import transfer_view as tv
from app.figures import block_distance_bars, method_curves, method_delta_curves
from rtcore import ResultCache, create_backbone
from rtcore.config import nearest_eps
from rtcore.models.ref import BackboneRef
from rtcore.runs import MethodComparison, ProgressEvent, Scheduler, TransferRequest, compare_methods
from rtcore.runs.compare import block_distances
from rtcore.transfer import TRANSFER_METHODS, FineTuneRecipe
from tests.app.conftest import use_small_defaults
from tests.unit.test_transfer import tiny_backbone, tiny_task

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
BACKBONE = "fmnist-cnn-standard"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> MethodComparison:
    cache = ResultCache(tmp_path_factory.mktemp("transfer-page"))
    return compare_methods(tiny_backbone(), tiny_task(), [0.0, 0.01, 0.03], "linf", 12, k=2, attack="fast",
                           cache=cache, recipe=FineTuneRecipe(epochs=1, batch_size=48), head_attack=False,
                           loss_attack=False)


def test_tables_figures_and_words(comparison: MethodComparison) -> None:
    eps = nearest_eps(0.028, comparison.summary["eps"].unique())
    assert eps == 0.03
    table = tv.method_summary(comparison, eps)
    assert list(table["method"]) == ["lp", "ft", "lp-ft", "ft-last-2"] and "[" in table["robust (attack)"].iloc[0]
    assert not (table == "None").any().any()
    moved = tv.movement_table(comparison)
    assert moved.loc[moved["method"] == "lp", "total"].item() == 0
    words = tv.verdict_text(comparison, eps, "linf")
    assert "most robust" in words and "ε" in words and "Δ" in words and "eps" not in words and "Delta" not in words
    acc, delta = method_curves(comparison.summary, eps), method_delta_curves(comparison.summary, eps)
    bars = block_distance_bars(block_distances(comparison))
    assert len(acc.data) == 8 + 2 and len(delta.data) == 5 and len(bars.data) == 4
    assert delta.data[-1].name == "base backbone (before)"
    assert acc.layout.legend.x >= 1, "the legend sits right of the plot, never over the title"


def test_the_pages_request_checks_its_input() -> None:
    g = create_backbone(BACKBONE, "cpu")
    ref = BackboneRef(BACKBONE)
    r = TransferRequest.over_grid(g, ref, "shapes", ["ft", "lp"], 1, 0.03, "linf", 20, "fast", 2, "")
    assert r.methods == ("lp", "ft") and 0.03 in r.eps and 1 / 255 in [round(e * 255) / 255 for e in r.eps]
    with pytest.raises(ValueError, match="k=9 is out of range.*4 blocks"):
        TransferRequest.over_grid(g, ref, "shapes", ["ft-last-k"], 9, 0.03, "linf", 20, "fast", 2, "")
    with pytest.raises(ValueError, match="non-empty selection"):
        TransferRequest.over_grid(g, ref, "shapes", [], 1, 0.03, "linf", 20, "fast", 2, "")
    with pytest.raises(ValueError, match="epochs=0"):
        TransferRequest.over_grid(g, ref, "shapes", ["ft"], 1, 0.03, "linf", 20, "fast", 0, "")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transfer-page-cache")


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, cache_dir: Path, comparison: MethodComparison) -> AppTest:
    """The page with small defaults; compare_methods answers from the tiny comparison, one method per call."""
    use_small_defaults(monkeypatch, cache_dir)
    calls: list[list[str]] = []

    def fake(g, task, eps, norm, n, *, methods, progress=None, **kw):  # noqa: ANN001, ANN202
        calls.append(list(methods))
        labels = {"ft-last-k": "ft-last-2"}
        keep = [labels.get(m, m) for m in methods]
        s = comparison.summary
        progress(ProgressEvent("attacking", 0.5))
        return MethodComparison(s[s["method"].isin(keep)].reset_index(drop=True),
                                comparison.samples[comparison.samples["method"].isin(keep)],
                                {k: v for k, v in comparison.infos.items() if k in keep})

    monkeypatch.setattr(rtcore.runs.jobs, "compare_methods", fake)
    monkeypatch.setattr(jobs, "SCHEDULER", Scheduler(replace_delay=0))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["eps"] = 0.03
    at.session_state["tasks"] = []  # the landing page of the first run computes nothing
    at.session_state["calls"] = calls
    return at


def test_page_waits_for_the_user_before_computing(page: AppTest) -> None:
    page.run().switch_page("pages/7_transfer.py").run()
    assert not page.exception, [e.value for e in page.exception]
    assert not page.error, [e.value for e in page.error]
    assert [b.key for b in page.main.button] == ["transfer_run"] and not page.get("plotly_chart")


def test_page_runs_one_job_step_per_method_and_draws_it(page: AppTest) -> None:
    page.run().switch_page("pages/7_transfer.py").run()
    page.number_input(key="transfer_k").set_value(2).run()
    page.button(key="transfer_run").click().run()
    assert not page.exception, [e.value for e in page.exception]
    assert not page.error, [e.value for e in page.error]
    assert page.session_state["calls"] == [[m] for m in TRANSFER_METHODS], "one step (under the device lock) per method"
    figs = [json.loads(el.proto.spec) for el in page.get("plotly_chart")]
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any("Robust accuracy" in t for t in titles) and any("Mean Δ" in t for t in titles)
    assert any("moved each block" in t for t in titles)
    assert len(page.table) == 2 and "most robust" in page.info[0].value
    assert "All results ready" in " ".join(c.value for c in page.caption)
    labels = [el.proto.label for el in page.get("download_button")]
    assert labels == ["Summary CSV", "Per-sample CSV", "Sweep file (.toml)"], "the comparison reproduces from its file"
    assert "rtcore sweep FILE" in " ".join(c.value for c in page.caption)
