"""The dashboard in a real browser at 1280x720 (a projector): `streamlit run app.py` + headless Chromium (Playwright).

Skips with a reason when Chromium or Playwright is missing, except under CI=true, where a missing browser is a
failure. Small defaults through RTCORE_DASHBOARD_* and a private cache; every request the page makes is recorded
and requests to hosts other than the app's are blocked and fail the test; every wait is bounded and the server
is always stopped. What it checks: a link's view round trip through the URL, every page (and your own task and
the zoo), every page again in presenter mode with every chart's text at 18 px or more, formulas not cut at
1280 px, a chart downloaded as PNG and as SVG, and the guided lesson walked from its first step to its last.
Screenshots (the top 1280x720 of each page, and each chart of it) go to $RTCORE_SCREENSHOT_DIR (if set) or to
the test's tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from app import lesson, nav
from rtcore.runs import selection

ROOT = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_S = 300
WIDTH, HEIGHT = 1280, 720
PAGES = [  # (url path, file stem for the screenshot, charts expected, controls to click first)
    ("bound", "landing_own_task", 3, ("own_task",)),  # your own task joins the built-in one here
    ("vulnerability", "representation", 5, ("rep_show_box", "rep_show_gallery")),
    ("loss", "loss_bound", 2, ()),
    ("tradeoff", "probe_tradeoff", 1, ()),
    ("classroom", "theory", 1, ("toy_example_3",)),
    ("transfer-methods", "transfer", 0, ()),
    ("backbone-zoo", "zoo", 1, ()),
    ("guided-lesson", "lesson", 0, ()),
]
#: charts on a page opened fresh (presenter mode, the lesson), and whether a job must finish first
FRESH = {"compare": (2, True), "bound": (3, True), "vulnerability": (3, True), "loss": (2, True),
         "tradeoff": (1, True), "classroom": (1, False), "transfer-methods": (0, False), "backbone-zoo": (1, False),
         "guided-lesson": (0, False)}
#: two backbones to compare (the page's default is every bundled one: too long for this test)
COMPARE = "fmnist-cnn-pgd-linf-0.1,fmnist-cnn-standard"
TITLES = {p.url_path: p.title for p in nav.PAGES}
#: every chart's text (hover labels aside), as the browser draws it
FONT_SIZES_JS = """() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] svg text'))
    .filter(t => !t.closest('.hoverlayer') && t.textContent.trim())
    .map(t => [parseFloat(getComputedStyle(t).fontSize), t.textContent.trim().slice(0, 40)])"""
#: formulas wider than the page's column (cut off, or behind a scroll bar) at this width; 4 px of slack for a
#: subscript's overhang
CUT_FORMULAS_JS = """() => Array.from(document.querySelectorAll('.katex-display')).filter(k => {
    const box = (k.closest('[data-testid="stElementContainer"]') || k.parentElement).getBoundingClientRect();
    return k.scrollWidth > k.clientWidth + 4 || k.getBoundingClientRect().right > box.right + 1;
    }).map(k => k.textContent.slice(0, 60))"""


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
    result = sweep({"backbones": [selection.default_backbone(), "fmnist-cnn-standard"],
                    "tasks": [env["RTCORE_DASHBOARD_TASKS"]], "eps": ["2/255", "8/255"],
                    "n": int(env["RTCORE_DASHBOARD_N"]), "attack": "fast"}, cache / "sweeps" / "tiny", cache_dir=cache)
    assert not result.failed, result.failures


def shoot(page: object, folder: Path, stem: str) -> None:
    """The top 1280x720 of the page as the room sees it, then every chart of the page on its own."""
    page.wait_for_timeout(600)  # type: ignore[attr-defined]  # plotly's transitions
    # widgets whose code is still loading are grey placeholders (stSkeleton): the room would see them drawn
    no_placeholder = "() => !document.querySelector('[data-testid=\"stSkeleton\"]')"
    page.wait_for_function(no_placeholder, timeout=PAGE_TIMEOUT_S * 1000)  # type: ignore[attr-defined]
    page.screenshot(path=str(folder / f"{stem}.png"))  # type: ignore[attr-defined]
    for attempt in range(3):  # a rerun re-draws charts as new elements: start again on the page as it is then
        try:
            charts = page.locator(ttfp.CHART)  # type: ignore[attr-defined]
            for i in range(charts.count()):
                charts.nth(i).screenshot(path=str(folder / f"{stem}-chart{i + 1}.png"), timeout=15_000)
            return
        except Exception:  # noqa: BLE001 - playwright's Error or TimeoutError: the chart went while it waited
            if attempt == 2:
                raise
            ttfp.wait_idle(page, PAGE_TIMEOUT_S)
            page.wait_for_timeout(1000)  # type: ignore[attr-defined]


def wait_page(page: object, where: str, n_charts: int, job: bool = True) -> None:
    """Until the page's job has finished and ``n_charts`` charts are drawn (without a job: its first chart)."""
    if n_charts and not job:
        ttfp.wait_first_chart(page, PAGE_TIMEOUT_S)
    elif n_charts:
        ttfp.wait_complete(page, PAGE_TIMEOUT_S, charts=n_charts)
    ttfp.wait_idle(page, PAGE_TIMEOUT_S)
    _no_exception(page, where)
    assert not page.get_by_text("Page not found").count(), f"{where}: no such page"  # type: ignore[attr-defined]


def go(page: object, url: str, path: str, params: dict[str, str]) -> None:
    """Open ``/path?params`` in the same browser tab (a new session of the app; the default page is ``/``)."""
    path = "" if path == next(p.url_path for p in nav.PAGES if p.default) else path
    page.goto(f"{url}/{path}?{urlencode(params)}", wait_until="domcontentloaded")  # type: ignore[attr-defined]


def query(page: object) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}  # type: ignore[attr-defined]


def test_dashboard_in_chromium(browser_exe: str, tmp_path: Path, shot_dir: Path) -> None:
    env = {**ttfp.SMALL_ENV, "RTCORE_CACHE_DIR": str(tmp_path / "cache"), "RTCORE_DASHBOARD_ATTACK": "fast"}
    folder = own_task(tmp_path / "my-task")
    tiny_sweep(tmp_path / "cache")
    requests = ttfp.RequestLog()
    link = {"backbone": "fmnist-cnn-standard", "norm": "linf", "eps": "8/255", "tasks": "shapes", "n": "20",
            "attack": "fast"}
    with ttfp.streamlit_server(env, log_path=tmp_path / "server.log") as url, ttfp.chromium(browser_exe) as browser:
        page = ttfp.open_page(browser, f"{url}/?{urlencode(link)}", width=WIDTH, height=HEIGHT, log=requests)
        try:
            # a link's view: the page answers it and keeps it in the URL; moving eps rewrites the URL, no new job
            ttfp.wait_complete(page, PAGE_TIMEOUT_S)
            ttfp.wait_idle(page, PAGE_TIMEOUT_S)
            _no_exception(page, "the landing page")
            assert "8/255" in ttfp.chart_titles(page)[0], "the link's eps"
            assert {k: query(page).get(k) for k in link} == link, "the URL keeps the view"
            job = ttfp.job_number(page)
            for key, expected in (("ArrowRight", "16/255"), ("ArrowLeft", "8/255"), ("ArrowLeft", "4/255")):
                seconds = ttfp.move_eps(page, key)
                assert expected in ttfp.chart_titles(page)[0] and seconds < 10, f"re-plot took {seconds:.1f} s"
                ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                assert page.query_selector(ttfp.PROGRESS) is None and ttfp.job_number(page) == job
                page.wait_for_function("(e) => location.search.includes(e)", arg=f"eps={expected.replace('/', '%2F')}",
                                       timeout=10_000)
            shoot(page, shot_dir, "landing")

            # every chart downloads as PNG and as SVG (the camera button, drawn by the browser)
            for fmt in ("png", "svg"):
                if fmt == "svg":
                    page.locator(".st-key-chart_format label", has_text="SVG").click()
                    ttfp.wait_idle(page, PAGE_TIMEOUT_S)
                chart = page.locator(ttfp.CHART).first
                chart.hover()
                with page.expect_download(timeout=30_000) as download:
                    chart.locator('.modebar-btn[data-title^="Download plot"]').click()
                assert download.value.suggested_filename == f"rtcore-landing_bars.{fmt}"

            # a link that compares two backbones starts the comparison
            go(page, url, "compare", {**link, "compare": COMPARE})
            wait_page(page, "/compare", *FRESH["compare"])
            shoot(page, shot_dir, "compare")

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
                wait_page(page, f"/{path}", n_charts, FRESH[path][1])
                assert not page.evaluate(CUT_FORMULAS_JS), f"a formula is cut at {WIDTH} px on /{path}"
                if stem == "zoo":
                    assert page.locator(".st-key-zoo_calibration .js-plotly-plot").count(), "the zoo's calibration"
                if stem in ("landing_own_task", "representation", "loss_bound"):
                    assert page.locator(f"{ttfp.CHART} svg text", has_text="my-task").count(), f"your task on /{path}"
                    assert str(tmp_path) not in page.inner_text("body").replace(str(folder), ""), "no server folder"
                shoot(page, shot_dir, stem)

            # presenter mode: every chart's text at 18 px or more, on every page with charts
            for path, (n_charts, job) in FRESH.items():
                go(page, url, path, {**link, "present": "1", "eps": "4/255", "compare": COMPARE})
                wait_page(page, f"/{path} (presenter)", n_charts, job)
                sizes = page.evaluate(FONT_SIZES_JS)
                assert not n_charts or sizes, f"no chart text found on /{path}"
                small = [s for s in sizes if s[0] < 18]
                assert not small, f"/{path} in presenter mode: text under 18 px: {small[:5]}"
                shoot(page, shot_dir, f"{path}-presenter")

            # the guided lesson, from the plan to its last step, through its own links
            go(page, url, "guided-lesson", {})
            ttfp.wait_idle(page, PAGE_TIMEOUT_S)
            page.get_by_role("link", name=f"Start: {lesson.STEPS[0].title}").click()
            for k, step in enumerate(lesson.STEPS):
                banner = page.locator(".st-key-lesson_banner")
                banner.get_by_text(f"step {k + 1} of {len(lesson.STEPS)}").wait_for(timeout=60_000)
                wait_page(page, f"lesson step {k + 1}", *FRESH[step.page])
                assert step.questions[0].split("*")[0][:30] in banner.inner_text()
                assert query(page).get("lesson") == str(k + 1), "the step is in the URL: a link to share"
                shoot(page, shot_dir, f"lesson-step{k + 1}")
                if k + 1 < len(lesson.STEPS):
                    banner.get_by_role("link", name=f"Next: {lesson.STEPS[k + 1].title}").click()
        finally:
            page.context.close()
    external = requests.external()
    assert requests.urls, "the request log works"
    assert not external, f"requests to hosts other than the app's: {sorted(set(external))}"
