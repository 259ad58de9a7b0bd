"""bench/strength.py: the table's counts and targets on made-up flags, and a smoke run on a tiny model
(pyautoattack and adv-lib are not runtime dependencies: the smoke run skips without them)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rtcore_bench_strength", ROOT / "bench" / "strength.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = keep
    return mod


def _setting(mod: ModuleType, strong: list[bool], aa: list[bool], t_strong: float, t_aa: float) -> object:
    n = len(strong)
    return mod.Setting(backbone="b", task="t", n=n, eps=[0.1], clean=1.0,
                       robust={"strong": [strong], "AA custom": [aa]},
                       times={"strong": mod.Timing(t_strong, t_strong), "AA custom": mod.Timing(t_aa, t_aa)})


def test_the_table_counts_disagreements_and_checks_the_targets() -> None:
    mod = _load()
    aa = [True] * 150 + [False] * 50
    same = _setting(mod, list(aa), list(aa), 1.0, 12.0)
    md, ok = mod.table([same], "AA custom")
    assert ok and "| 0 / 0 |" in md and "12.00x" in md
    weaker = list(aa)
    weaker[150:152] = [True, True]  # AA breaks 2 points strong does not: 2 test points above, more than 1
    md, ok = mod.table([_setting(mod, weaker, aa, 1.0, 12.0)], "AA custom")
    assert not ok and "| 0 / 2 |" in md and "+2 points | NO" in md
    one = list(aa)
    one[150] = True  # one test point above AA: allowed, and the union adds 1 of 200 points = 0.5 % of n
    assert mod.table([_setting(mod, one, aa, 1.0, 12.0)], "AA custom")[1]
    slow = _setting(mod, list(aa), list(aa), 2.0, 12.0)  # 6x: enough for a row, not summed over the rows
    md, ok = mod.table([slow], "AA custom")
    assert not ok and "6.00x | NO" in md
    fast = _setting(mod, list(aa), list(aa), 1.0, 30.0)  # 30x and 6x: every row >= 5x, the sum 42 / 3 = 14x
    assert mod.table([slow, fast], "AA custom")[1]
    trade = list(aa)
    trade[150], trade[0] = True, False  # one each way: equal robust accuracy, the union adds 0.5 % of n
    md, ok = mod.table([_setting(mod, trade, aa, 1.0, 12.0)], "AA custom")
    assert ok and "| 1 / 1 |" in md and "+1 (0.5%)" in md


def test_a_smoke_run_on_a_tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyautoattack")
    mod = _load()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 5)).eval()
    x = torch.rand(8, 1, 8, 8)
    y = net(x).argmax(1)
    monkeypatch.setattr(mod.rows_mod, "load", lambda row, device, n=None: (net, x[:row.n], y[:row.n]))
    names = ["strong", "standard", "AA custom"] + (["FMN"] if mod.adv_lib_available() else [])
    mod.main(["--n", "8", "--chunks", "2", "--backbones", "tiny", "--tasks", "t", "--eps", "2/255", "0.1",
              "--contenders", *names, "--out", str(tmp_path)])
    data = json.loads((tmp_path / "strength.json").read_text())
    (setting,) = data["settings"]
    assert set(setting["robust"]) == set(names) and len(setting["robust"]["strong"]) == 2
    for flags in setting["robust"].values():
        assert len(flags[0]) == 8 and all(b >= a for a, b in zip(flags[1], flags[0])), "monotone in eps"
    assert not any(setting["robust"]["strong"][1]), "a random CNN is not robust at linf 0.1"
    md = (tmp_path / "strength.md").read_text()
    assert "AA custom / strong (cpu)" in md and "| tiny | t | 8 | 2/255 |" in md and "Summed over the rows" in md
