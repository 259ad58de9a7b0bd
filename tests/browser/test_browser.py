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

from app import nav, state

ROOT = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_S = 300
SHOT_HEIGHT = 3400  # tall enough that a screenshot shows a whole page (Streamlit scrolls inside the app)
PAGES = [  # (url path, file stem for the screenshot, charts expected, controls to click first)
    ("compare", "compare", 2, ("compare_run",)),
    ("bound", "landing_own_task", 3, ("own_task",)),  # your own task joins the built-in one here
    ("vulnerability", "representation", 5, ("rep_show_box", "rep_show_gallery")),
    ("loss", "loss_bound", 2, ()),
    ("tradeoff", "probe_tradeoff", 1, ()),
    ("classroom", "theory", 1, ("toy_example_3",)),
    ("transfer-methods", "transfer", 0, ()),
    ("backbone-zoo", "zoo", 1, ()),
]
TITLES = {p.url_path: p.title for p in nav.PAGES}


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


def own_task(folder: Path) -> Path:
    """A small image folder of your own (train/<class>/*.png, test/<class>/*.png): dark blocks vs stripes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 20)):
        for label, name in enumerate(("blocks", "stripes")):
            (folder / split / name).mkdir(parents=True)
            for i in range(count):
                img = rng.uniform(0, 0.3, (28, 28))
                if label:
                    img[:, :: int(rng.integers(3, 6))] += 0.6
                else:
                    r, c = rng.integers(0, 14, 2)
                    img[r:r + 12, c:c + 12] += 0.6
                Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / split / name / f"{i}.png")
    return folder


def add_own_task(page: object, folder: Path) -> None:
    """Through the sidebar: open the form, type the folder, press Add."""
    page.get_by_text("Add a task from your own data").first.click()  # type: ignore[attr-defined]
    box = page.locator(".st-key-user_task_path input").last  # type: ignore[attr-defined]
    box.fill(str(folder))
    box.press("Enter")
    page.wait_for_timeout(500)  # type: ignore[attr-defined]
    page.locator(".st-key-user_task_add button").last.click()  # type: ignore[attr-defined]


def tiny_sweep(cache: Path) -> None:
    """A small sweep under the cache's sweeps/ folder, for the zoo page: two backbones on the dashboard's task
    and n here, so the landing page reads the default backbone's probe from the cache the sweep filled."""
    from rtcore.runs.sweep import sweep

    env = ttfp.SMALL_ENV
    result = sweep({"backbones": [state.default_backbone(), "fmnist-cnn-standard"],
                    "tasks": [env["RTCORE_DASHBOARD_TASKS"]], "eps": ["2/255", "8/255"],
                    "n": int(env["RTCORE_DASHBOARD_N"]), "attack": "fast"}, cache / "sweeps" / "tiny", cache_dir=cache)
    assert not result.failed, result.failures


def test_dashboard_in_chromium(browser_exe: str, tmp_path: Path, shot_dir: Path) -> None:
    env = {**ttfp.SMALL_ENV, "RTCORE_CACHE_DIR": str(tmp_path / "cache"), "RTCORE_DASHBOARD_ATTACK": "fast"}
    folder = own_task(tmp_path / "my-task")
    tiny_sweep(tmp_path / "cache")
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

            for path, stem, n_charts, clicks in PAGES:
                # the sidebar's navigation keeps the session (and your own task) across pages
                before = page.inner_text("h1")
                page.locator('[data-testid="stSidebarNav"] a', has_text=TITLES[path]).first.click()
                page.wait_for_function("(before) => { const h = document.querySelector('h1'); "
                                       "return h && h.innerText !== before; }", arg=before,
                                       timeout=PAGE_TIMEOUT_S * 1000)
                ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                for key in clicks:
                    if key == "own_task":  # a task from your own data (the sidebar's form, a folder on the server)
                        add_own_task(page, folder)
                        page.locator(f"{ttfp.CHART} svg text", has_text="my-task").first.wait_for(
                            timeout=PAGE_TIMEOUT_S * 1000)  # drawn in the chart: the new job has results
                    else:
                        page.locator(f".st-key-{key} button, .st-key-{key} label").first.click()
                    ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                if n_charts:
                    if stem in ("theory", "zoo"):  # no job: a chart drawn from what is there
                        ttfp.wait_first_chart(page, PAGE_TIMEOUT_S)
                    else:
                        ttfp.wait_complete(page, PAGE_TIMEOUT_S, charts=n_charts)
                ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                _no_exception(page, f"page /{path}")
                if stem == "zoo":
                    assert page.locator(".st-key-zoo_calibration .js-plotly-plot").count(), "the zoo's calibration"
                if stem in ("landing_own_task", "representation", "loss_bound"):
                    assert page.locator(f"{ttfp.CHART} svg text", has_text="my-task").count(), f"your task on /{path}"
                page.wait_for_timeout(800)
                page.screenshot(path=str(shot_dir / f"{stem}.png"))
        finally:
            page.context.close()
    external = requests.external()
    assert requests.urls, "the request log works"
    assert not external, f"requests to hosts other than the app's: {sorted(set(external))}"
