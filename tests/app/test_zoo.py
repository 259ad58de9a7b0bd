"""The backbone-zoo page (pages/8_zoo.py), its figure and the library's sweep tables (rtcore.runs.zoo), on a tiny
real sweep made here:
three bundled backbones (adversarial, standard, self-supervised) x one task x two eps, n = 8, `fast`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import figures as fx
from rtcore.runs.sweep import load_sweep, sweep
from rtcore.runs.zoo import backbone_means, rank_agreement, select_rows, sweep_settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "8_zoo.py")
SWEEP = "assets/zoo.toml"  # the sweep the page's empty state names
TINY = {"backbones": ["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard", "fmnist-cnn-simclr"],
        "tasks": ["fmnist-novel"], "eps": ["2/255", "8/255"], "n": 8, "attack": "fast", "probes": ["logistic-std"]}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding one finished sweep under sweeps/tiny."""
    root = tmp_path_factory.mktemp("zoo-cache")
    res = sweep(TINY, root / "sweeps" / "tiny", cache_dir=root)
    assert res.ok, res.failures
    return root


def page(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(cache_dir))
    return AppTest.from_file(PAGE, default_timeout=60)


def test_figure_and_tables(cache: Path) -> None:
    df = load_sweep(cache / "sweeps" / "tiny")
    assert set(df["protocol"]) == {"adversarial", "standard", "self-supervised"}
    fig = fx.calibration_figure(df)
    names = [t.name for t in fig.data]
    assert names == ["bound = empirical", "adversarial", "standard", "self-supervised", "task: fmnist-novel"]
    assert all(len(t.x) == 2 for t in fig.data[1:4])  # one dot per (backbone, task, eps)
    table = backbone_means(df)
    assert len(table) == 3 and (table["gap"] >= 0).all()  # bound <= robust on every row
    assert list(table["robust_acc"]) == sorted(table["robust_acc"], reverse=True) and set(table["points"]) == {2}
    one = df[df["backbone"] == table["backbone"][0]]
    assert table["bound"][0] == one["bound"].mean()
    assert table["gap"][0] == one["robust_acc"].mean() - one["bound"].mean()
    agree = rank_agreement(df)
    assert list(agree["backbones"]) == [3, 3] and agree["spearman"].between(-1, 1).all()
    assert sweep_settings(df)["probe"] == ["logistic-std"] and sweep_settings(df)["n"] == [8]
    assert len(select_rows(df, {"probe": "logistic-std"}, ["fmnist-novel"], [8 / 255])) == 3
    assert select_rows(df, {"probe": "logistic"}).empty and len(select_rows(df, {})) == len(df)


def test_page_draws_the_sweep_and_curves_on_demand(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = page(cache, monkeypatch).run()
    assert not at.exception
    assert at.selectbox(key="zoo_sweep").value == "tiny"
    assert "<server cache>/sweeps/tiny" in at.caption[0].value and str(cache) not in at.caption[0].value
    assert len(at.get("plotly_chart")) == 1 and len(at.dataframe) == 2
    shown = at.dataframe[0].value
    assert isinstance(shown, pd.DataFrame) and set(shown["protocol"]) == {"adversarial", "standard", "self-supervised"}
    at.multiselect(key="zoo_curves").set_value(["fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-simclr"]).run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_page_without_a_sweep_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = page(tmp_path, monkeypatch).run()
    assert not at.exception and f"rtcore sweep {SWEEP}" in at.info[0].value and "offline" in at.info[0].value
    at.text_input(key="zoo_path").set_value(str(tmp_path)).run()
    assert not at.exception and "no finished units" in at.warning[0].value


def test_page_is_in_the_navigation() -> None:
    from app import nav

    spec = next(p for p in nav.PAGES if p.path == "pages/8_zoo.py")
    assert spec.controls == () and spec in nav.available_pages()  # self-contained: no sidebar controls


def test_the_bundled_sweep_runs_offline() -> None:
    """The page's empty state names assets/zoo.toml: a sweep of bundled backbones and offline tasks only."""
    import rtcore
    from rtcore.models.registry import backbone_info
    from rtcore.runs.sweep_spec import load_sweep_spec

    spec = load_sweep_spec(ROOT / SWEEP)
    units = spec.units
    bundled = {b for b in rtcore.list_backbones() if backbone_info(b).kind == "bundled"}
    assert {u.backbone for u in units} == bundled
    assert {u.task for u in units} <= set(rtcore.list_tasks(offline_only=True))


def test_the_zoo_sidebar_claims_only_what_the_page_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The zoo page's sidebar said "everything it shows is computed exactly": it draws a finished sweep."""
    monkeypatch.setenv("RTCORE_CACHE_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["tasks"] = []
    at.run()
    at.switch_page(PAGE).run()
    note = " ".join(c.value for c in at.sidebar.caption)
    assert "finished sweep" in note and "computed exactly" not in note
