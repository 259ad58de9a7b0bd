"""The dashboard in a real browser: `streamlit run app.py` + headless Chromium (Playwright).

Skips with a reason when Chromium or Playwright is missing, except under CI=true, where a
missing browser is a failure. Small defaults through RTCORE_DASHBOARD_* and a private cache;
every request the page makes is recorded and requests to hosts other than the app's are
blocked and fail the test; every wait is bounded and the server is always stopped.
Screenshots of every page go to $RTCORE_SCREENSHOT_DIR (if set) or to the test's tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_S = 300
SHOT_HEIGHT = 2200  # tall enough that a screenshot shows a whole page (Streamlit scrolls inside the app)
PAGES = [  # (url path, file stem for the screenshot, charts expected, button to press first)
    ("vulnerability", "representation", 4, None),
    ("loss", "loss_bound", 2, None),
    ("tradeoff", "probe_tradeoff", 1, None),
    ("compare", "compare", 2, "compare_run"),
    ("classroom", "theory", 1, "toy_example_3"),
    ("transfer", "transfer", 0, None),
]
PAGE_FILES = {"transfer": "pages/7_transfer.py"}  # a page another change adds: screenshot it when present


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


def _no_exception(page: object, where: str) -> None:
    assert page.query_selector(ttfp.EXCEPTION) is None, f"{where} shows an exception"  # type: ignore[attr-defined]


def test_dashboard_in_chromium(browser_exe: str, tmp_path: Path, shot_dir: Path) -> None:
    env = {**ttfp.SMALL_ENV, "RTCORE_CACHE_DIR": str(tmp_path / "cache"), "RTCORE_DASHBOARD_ATTACK": "fast"}
    server_log = tmp_path / "server.log"
    requests = ttfp.RequestLog()
    with ttfp.streamlit_server(env, log_path=server_log) as url, ttfp.chromium(browser_exe) as browser:
        page = ttfp.open_page(browser, url, height=SHOT_HEIGHT, log=requests)
        try:
            ttfp.wait_first_chart(page, PAGE_TIMEOUT_S)
            ttfp.wait_complete(page, PAGE_TIMEOUT_S)
            ttfp.wait_idle(page, PAGE_TIMEOUT_S)
            _no_exception(page, "the landing page")
            assert "Bound vs empirical" in page.inner_text("h1")
            assert "4/255" in ttfp.chart_titles(page)[0], "the default eps is an exact grid value"

            # the eps cursor: every move re-draws the chart, no job starts, no progress bar appears
            job = ttfp.job_number(page)
            assert job is not None, "the status line names its job"
            for key, expected in (("ArrowRight", "8/255"), ("ArrowRight", "16/255"), ("ArrowLeft", "8/255"),
                                  ("ArrowLeft", "4/255")):
                seconds = ttfp.move_eps(page, key)
                assert expected in ttfp.chart_titles(page)[0]
                assert seconds < 10, f"re-plot took {seconds:.1f} s"
                ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                assert page.query_selector(ttfp.PROGRESS) is None, "moving eps must not start a computation"
                assert ttfp.job_number(page) == job, "moving eps must not start a new job"
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot_dir / "landing.png"))
            assert (shot_dir / "landing.png").stat().st_size > 10_000

            for path, stem, n_charts, button in PAGES:
                if path in PAGE_FILES and not (ROOT / PAGE_FILES[path]).is_file():
                    continue
                page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=60_000)
                page.wait_for_selector("h1", timeout=PAGE_TIMEOUT_S * 1000)
                ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                if button is not None:
                    page.locator(f".st-key-{button} button").first.click()
                if n_charts:
                    if stem == "theory":
                        ttfp.wait_first_chart(page, PAGE_TIMEOUT_S)
                    else:
                        ttfp.wait_complete(page, PAGE_TIMEOUT_S, charts=n_charts)
                ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                _no_exception(page, f"page /{path}")
                page.wait_for_timeout(800)
                page.screenshot(path=str(shot_dir / f"{stem}.png"))
        finally:
            page.context.close()
    external = requests.external()
    assert requests.urls, "the request log works"
    assert not external, f"requests to hosts other than the app's: {sorted(set(external))}"
