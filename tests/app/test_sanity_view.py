"""The landing page's sanity flags: the table, the verdicts and the ``sanity`` column (pure functions, hand-made
flags), and the opt-in section driven in AppTest (n=20, one task, the fast attack, a private cache): a job of the
page's spec with sanity=True, whose attacks are cache hits.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import rtcore.sanity
from rtcore.config import eps_grid
from rtcore.export import csv_bytes
from rtcore.sanity import FLAG_NAMES, SanityFlag, flag_table, values_text
from tests.app.conftest import use_small_defaults

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 300

PASSED = [
    SanityFlag("monotone_large_eps", True, {"max_increase": 0.0, "large_eps": 0.5, "robust_acc_at_large_eps": 0.0},
               "never increases", "masking"),
    SanityFlag("noise_weaker", True, {"eps": 0.0156862745, "gap": 0.25}, "noise >= attack", "wrong way"),
    SanityFlag("more_steps", True, {"drop": 0.0, "steps": 40.0}, "drop <= 2%", "not converged"),
    SanityFlag("gradient_free", True, {"eps": 0.03}, "needs pyautoattack", "Square attack not run", skipped=True),
]
FLAGGED = [
    PASSED[0],
    SanityFlag("noise_weaker", False, {"eps": 0.03, "gap": -0.1}, "noise >= attack", "wrong way"),
    SanityFlag("more_steps", False, {"drop": 0.125}, "drop <= 2%", "had not converged"),
    PASSED[3],
]


# ---------------------------------------------------------------- pure functions

def test_values_text_is_compact() -> None:
    assert values_text({"eps": 0.0156862745, "steps": 40.0, "gap": -0.1}) == "eps=0.0157, steps=40, gap=-0.1"
    assert values_text({}) == ""


def test_flag_table_has_one_row_per_task_and_check() -> None:
    table = flag_table({"shapes": PASSED, "digits": FLAGGED})
    assert list(table.columns) == ["task", "check", "status", "measured", "threshold", "meaning"]
    assert len(table) == 8 and list(table["task"]) == ["shapes"] * 4 + ["digits"] * 4
    assert list(table["check"][:4]) == list(FLAG_NAMES)
    assert list(table["status"]) == ["ok", "ok", "ok", "skipped", "ok", "failed", "failed", "skipped"]
    row = table.iloc[6]
    assert (row["measured"], row["threshold"], row["meaning"]) == ("drop=0.125", "drop <= 2%", "had not converged")
    assert flag_table({}).empty and list(flag_table({}).columns) == list(table.columns)


def test_verdict_names_failed_and_skipped_checks() -> None:
    ok, line = rtcore.sanity.verdict(PASSED)
    assert ok and line == "all checks passed (skipped: gradient_free)"
    ok, line = rtcore.sanity.verdict(FLAGGED)
    assert not ok
    assert line.startswith("2 checks failed (noise_weaker, more_steps): the robust accuracy may be an overestimate")
    ok, line = rtcore.sanity.verdict(FLAGGED[:2])
    assert not ok and line.startswith("1 check failed (noise_weaker)")
    assert rtcore.sanity.verdict(PASSED[:3]) == (True, "all checks passed")


def test_with_flags_adds_the_sanity_column() -> None:
    table = pd.DataFrame({"task": ["shapes", "digits", "cifar"], "clean": [0.9, 0.8, 0.7]})
    out = rtcore.sanity.with_flags(table, {"shapes": PASSED, "digits": FLAGGED})
    assert list(out["sanity"]) == ["ok", "noise_weaker,more_steps", "not checked"]
    assert list(out.columns) == ["task", "clean", "sanity"] and "sanity" not in table.columns, "a new frame"
    assert rtcore.sanity.with_flags(table, {}) is table, "no flags: the table as it was"


def test_flags_csv_reads_back() -> None:
    import io

    back = pd.read_csv(io.BytesIO(csv_bytes(flag_table({"digits": FLAGGED}))))
    assert list(back["status"]) == ["ok", "failed", "failed", "skipped"] and set(back["task"]) == {"digits"}


# ---------------------------------------------------------------- the section on the landing page

@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Small defaults through the environment overrides, and a private cache."""
    use_small_defaults(monkeypatch, tmp_path_factory.mktemp("sanity-cache"))


def test_landing_page_runs_the_sanity_checks(small: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Square (1000 queries) takes about 20 s on a CPU even on this small subset: here gradient_free is skipped, as
    # without pyautoattack, so the section's skipped path is the one drawn
    monkeypatch.setattr(rtcore.sanity, "autoattack_available", lambda: False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in {"n": 20, "tasks": ["shapes"], "attack": "fast"}.items():
        at.session_state[k] = v
    at.run()  # returns when the page's job has finished (the page reruns until then)
    assert not at.exception, [e.value for e in at.exception]
    assert "Is the attack trustworthy? (sanity flags)" in [s.value for s in at.subheader]
    button = at.button(key="sanity_run")
    assert button.label == "Run the sanity checks" and not button.disabled
    assert "sanity" not in at.table[0].value.columns, "no flags before the button"

    t0 = time.perf_counter()
    button.click().run()
    print(f"\nsanity checks on the landing page (n=20, shapes, fast): {time.perf_counter() - t0:.1f} s")
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    flags = next(df.value for df in at.table if "check" in df.value.columns)
    assert list(flags["task"]) == ["shapes"] * 4 and list(flags["check"]) == list(FLAG_NAMES)
    assert set(flags["status"]) <= {"ok", "failed", "skipped"} and flags["status"].iloc[3] == "skipped"
    verdicts = [m.value for m in [*at.success, *at.warning] if m.value.startswith("**shapes**")]
    assert len(verdicts) == 1
    table = at.table[0].value
    value = table["sanity"].iloc[0]
    assert list(table["task"]) == ["shapes"] and (value == "ok" or set(value.split(",")) <= set(FLAG_NAMES)), \
        "the flags next to the numbers"
    assert any(el.proto.label == "Sanity flags CSV" for el in at.get("download_button"))

    at.sidebar.select_slider(key="eps").set_value(eps_grid("linf")[4]).run()
    assert any("check" in df.value.columns for df in at.table), "moving eps keeps the flags"
    assert at.button(key="sanity_run").label == "Run the sanity checks again"
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)  # another session sees the same flags
    for k, v in {"n": 20, "tasks": ["shapes"], "attack": "fast"}.items():
        fresh.session_state[k] = v
    fresh.run()
    assert "sanity" in fresh.table[0].value.columns
