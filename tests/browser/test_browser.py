"""The dashboard in a real browser: `streamlit run app.py` + headless Chromium (Playwright).

Skips with a reason when Chromium or Playwright is missing, except under CI=true, where a
missing browser is a failure. Small defaults through RTCORE_DASHBOARD_* and a private cache;
traffic only to 127.0.0.1; every wait is bounded and the server is always stopped.
Screenshots go to $RTCORE_SCREENSHOT_DIR (if set) or to the test's tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_S = 240
PAGES = [  # (url path, file stem for the screenshot, charts expected)
    ("", "landing", 3),
    ("vulnerability", "representation", 4),
    ("loss", "loss_bound", 2),
    ("classroom", "theory", 0),
    ("compare", "compare", 0),
]


def _load_helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("time_to_first_plot", ROOT / "scripts" / "time_to_first_plot.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ttfp = _load_helpers()


def _require(condition: bool, reason: str) -> None:
    """Skip when something is missing, but fail under CI=true (the browser test must run there)."""
    if condition:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run; see scripts/install_browser.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_exe() -> str:
    exe = ttfp.find_chromium()
    _require(exe is not None,
             "Chromium not found (/usr/bin/chromium or $RTCORE_CHROMIUM); run scripts/install_browser.sh")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require(False, "Playwright is not installed; pip install -r requirements-browser.txt")
    return str(exe)


@pytest.fixture
def shot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("RTCORE_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_dashboard_in_chromium(browser_exe: str, tmp_path: Path, shot_dir: Path) -> None:
    env = {**ttfp.SMALL_ENV, "RTCORE_CACHE_DIR": str(tmp_path / "cache"), "RTCORE_DASHBOARD_ATTACK": "fast"}
    log = tmp_path / "server.log"
    with ttfp.streamlit_server(env, log_path=log) as url, ttfp.chromium(browser_exe) as browser:
        page = ttfp.open_page(browser, url, height=1600)
        try:
            ttfp.wait_first_chart(page, PAGE_TIMEOUT_S)
            ttfp.wait_complete(page, PAGE_TIMEOUT_S)
            assert page.query_selector(ttfp.EXCEPTION) is None, "the landing page shows an exception"
            assert "Bound vs empirical" in page.inner_text("h1")
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot_dir / "landing.png"))
            assert (shot_dir / "landing.png").stat().st_size > 10_000
            for path, stem, n_charts in PAGES[1:]:
                page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=60_000)
                page.wait_for_selector("h1", timeout=PAGE_TIMEOUT_S * 1000)
                if n_charts:
                    ttfp.wait_complete(page, PAGE_TIMEOUT_S, charts=n_charts)
                elif stem == "theory":
                    ttfp.wait_first_chart(page, PAGE_TIMEOUT_S)
                else:
                    ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                assert page.query_selector(ttfp.EXCEPTION) is None, f"page /{path} shows an exception"
                page.wait_for_timeout(500)
                page.screenshot(path=str(shot_dir / f"{stem}.png"))
        finally:
            page.context.close()
