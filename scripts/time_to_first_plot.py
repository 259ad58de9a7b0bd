#!/usr/bin/env python3
"""Time from opening the dashboard to its first chart, in headless Chromium, cold and warm.

Starts ``streamlit run app.py`` on a free 127.0.0.1 port with the real defaults (unless
``--small``), opens the landing page in Debian's Chromium driven by Playwright, and measures:

* cold: a fresh, empty ``RTCORE_CACHE_DIR`` and a fresh server process;
* warm: the same server and cache, a new browser session (a second visit);
* warm, new server: a new server process on the same disk cache (a restart).

For each: seconds until the first plotly chart shows data (a bar or a marker; the landing page draws the
empty frame of its bars, every task "computing…", before that), and until the page is complete
(no progress bar left, all of the landing page's charts drawn). Then the re-plot time when the
eps cursor moves between grid values on the warm cache: in the browser (key press to the new
chart title, no new job) and server-side in an AppTest (the script run alone). Every request the
browser makes is recorded; requests to any host but the app's are blocked and reported.
Prints the numbers and exits. The server and the browser are always stopped.

    python scripts/time_to_first_plot.py [--small] [--screenshots DIR] [--timeout 900]

The helpers (``streamlit_server``, ``chromium``, ``open_page``, ``move_eps``) are reused by
tests/browser/test_browser.py.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot'
#: a chart with data: a bar or a marker (the landing page draws its empty frame, every task "computing…", at once)
DATA_CHART = f"{CHART} .point"
PROGRESS = '[data-testid="stProgress"]'
READY = "All results ready"  # written by app/ui.py when the page's evaluation has finished
EXCEPTION = '[data-testid="stException"]'
LANDING_CHARTS = 3
SMALL_ENV = {"RTCORE_DASHBOARD_N": "20", "RTCORE_DASHBOARD_TASKS": "shapes"}
EPS_SLIDER = '[data-testid="stSidebar"] .st-key-eps input[type="range"]'
BARS_TITLE = '[data-testid="stPlotlyChart"] .gtitle'
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_chromium() -> str | None:
    """``$RTCORE_CHROMIUM`` when set (only that), else Debian's /usr/bin/chromium or chromium on PATH."""
    override = os.environ.get("RTCORE_CHROMIUM")
    candidates = [override] if override else ["/usr/bin/chromium", shutil.which("chromium"),
                                              shutil.which("chromium-browser")]
    for cand in candidates:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def streamlit_server(env: Mapping[str, str], *, log_path: Path | None = None,
                     start_timeout: float = 120.0) -> Iterator[str]:
    """Run the dashboard's server (``python -m app.serve``: ``streamlit run app.py`` with its modules imported
    before the first visitor) on a free 127.0.0.1 port; yield its URL; always stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "app.serve", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode} before serving {url}"
                                   + (f"; see {log_path}" if log_path else ""))
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {start_timeout:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        _stop(proc)
        if log_path:
            log.close()  # type: ignore[union-attr]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server we started (its own process group), politely first."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def chromium(executable: str) -> Iterator[Any]:
    """A headless Chromium (Playwright) from a system executable; never downloads a browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


class RequestLog:
    """Every URL a browser context requested; requests to hosts other than the app's are blocked."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def external(self) -> list[str]:
        return [u for u in self.urls if not _is_local(u)]


def _is_local(url: str) -> bool:
    return url.startswith(("data:", "blob:", "about:")) or urlparse(url).hostname in LOCAL_HOSTS


def _local_only(route: Any) -> None:
    if _is_local(route.request.url):
        route.continue_()
    else:
        route.abort()


def open_page(browser: Any, url: str, *, width: int = 1500, height: int = 1000, dark: bool = False,
              log: RequestLog | None = None) -> Any:
    """A new browser session (context) on ``url``; every request goes to ``log``, other hosts are blocked."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme="dark" if dark else "light")
    if log is not None:
        context.on("request", lambda req: log.urls.append(req.url))
    context.route("**/*", _local_only)
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    return page


def job_number(page: Any) -> int | None:
    """The job number the page's status line shows ("job #3"), or None."""
    m = re.search(r"job #(\d+)", page.inner_text("body"))
    return int(m.group(1)) if m else None


def chart_titles(page: Any) -> list[str]:
    return [t.text_content() or "" for t in page.query_selector_all(BARS_TITLE)]


def move_eps(page: Any, key: str = "ArrowRight", timeout_s: float = 30) -> float:
    """Move the sidebar's eps cursor one grid value with the keyboard; seconds until the first chart's
    title shows the new eps (the chart was re-drawn)."""
    before = chart_titles(page)[0]
    thumb = page.locator(EPS_SLIDER)
    thumb.focus()
    t0 = time.perf_counter()
    thumb.press(key)
    page.wait_for_function(
        """([sel, before]) => { const t = document.querySelector(sel); return t && t.textContent !== before; }""",
        arg=[BARS_TITLE, before], timeout=timeout_s * 1000, polling=20)
    return time.perf_counter() - t0


def wait_first_chart(page: Any, timeout_s: float) -> None:
    """Until a chart shows data (a bar or a marker), not only its empty frame."""
    page.wait_for_selector(DATA_CHART, state="attached", timeout=timeout_s * 1000)


def wait_complete(page: Any, timeout_s: float, charts: int = LANDING_CHARTS) -> None:
    """Until the page says its evaluation is finished and at least ``charts`` charts are drawn."""
    page.wait_for_function(
        """([chart, ready, n]) => document.querySelectorAll(chart).length >= n
             && document.body.innerText.includes(ready)""",
        arg=[CHART, READY, charts], timeout=timeout_s * 1000, polling=250)


def wait_idle(page: Any, timeout_s: float) -> None:
    """Until the script run has finished (Streamlit's running indicator is gone)."""
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_s * 1000)


def measure(browser: Any, url: str, timeout_s: float, shot: Path | None = None,
            log: RequestLog | None = None) -> tuple[float, float]:
    """Seconds to the first chart and to the complete landing page, in a new browser session."""
    t0 = time.perf_counter()
    page = open_page(browser, url, log=log)
    try:
        wait_first_chart(page, timeout_s)
        first = time.perf_counter() - t0
        wait_complete(page, timeout_s)
        complete = time.perf_counter() - t0
        if page.query_selector(EXCEPTION) is not None:
            raise RuntimeError("the landing page shows an exception")
        if shot is not None:
            page.wait_for_timeout(800)  # let plotly finish its transitions
            page.screenshot(path=str(shot), full_page=True)
        return first, complete
    finally:
        page.context.close()


def measure_replot(browser: Any, url: str, timeout_s: float, moves: int = 4) -> tuple[list[float], bool]:
    """Browser re-plot times for eps moves on a finished landing page, and whether no new job started."""
    page = open_page(browser, url)
    try:
        wait_complete(page, timeout_s)
        wait_idle(page, timeout_s)
        job = job_number(page)
        times = []
        for i in range(moves):
            times.append(move_eps(page, "ArrowRight" if i % 2 == 0 else "ArrowLeft"))
            wait_idle(page, timeout_s)
        same = job is not None and job_number(page) == job and page.query_selector(PROGRESS) is None
        return times, same
    finally:
        page.context.close()


def apptest_replot(env: Mapping[str, str], moves: int = 6) -> list[float]:
    """Server-side re-plot: seconds per AppTest script run after the eps cursor moved (warm cache)."""
    from streamlit.testing.v1 import AppTest

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    try:
        from rtcore.runs import selection

        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900).run()
        norm = at.session_state["norm"]
        options = selection.eps_options(norm, at.session_state["extra_eps"].get(norm, []))
        i = options.index(at.session_state["eps"])
        times = []
        for k in range(moves):
            i = min(i + 1, len(options) - 1) if k % 2 == 0 else max(i - 1, 0)
            t0 = time.perf_counter()
            at.sidebar.select_slider(key="eps").set_value(options[i]).run()
            times.append(time.perf_counter() - t0)
        if at.exception:
            raise RuntimeError(f"the landing page raised {at.exception[0].value}")
        return times
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="test-sized defaults (n=20, task shapes)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for one page (default 900)")
    ap.add_argument("--screenshots", type=Path, help="folder for landing-page screenshots")
    ap.add_argument("--log", type=Path, help="folder for the servers' logs")
    args = ap.parse_args(argv)
    exe = find_chromium()
    if exe is None:
        print("no Chromium found: install Debian's chromium (scripts/install_browser.sh)", file=sys.stderr)
        return 2
    for folder in (args.screenshots, args.log):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    env = dict(SMALL_ENV) if args.small else {}
    with tempfile.TemporaryDirectory(prefix="rtcore-ttfp-") as cache:
        env["RTCORE_CACHE_DIR"] = cache
        results: dict[str, tuple[float, float]] = {}
        log = RequestLog()
        with chromium(exe) as browser:
            server_log = args.log / "server-1.log" if args.log else None
            with streamlit_server(env, log_path=server_log) as url:
                results["cold (empty cache, new server)"] = measure(
                    browser, url, args.timeout, args.screenshots / "cold.png" if args.screenshots else None, log)
                results["warm (same server, new browser session)"] = measure(
                    browser, url, args.timeout, args.screenshots / "warm.png" if args.screenshots else None, log)
                replot, same_job = measure_replot(browser, url, args.timeout)
            server_log = args.log / "server-2.log" if args.log else None
            with streamlit_server(env, log_path=server_log) as url:
                results["warm (disk cache, new server)"] = measure(browser, url, args.timeout, log=log)
        server_replot = apptest_replot(env)
    defaults = "small test defaults (n=20, shapes)" if args.small else "real defaults"
    print(f"time to first plot, {defaults}:")
    for name, (first, complete) in results.items():
        print(f"  {name:42s} first chart {first:7.1f} s   complete page {complete:7.1f} s")
    print(f"  re-plot after an eps move, browser (key press to new chart): median {statistics.median(replot):.2f} s "
          f"(max {max(replot):.2f} s, {len(replot)} moves; {'no new job' if same_job else 'A NEW JOB STARTED'})")
    print(f"  re-plot after an eps move, server side (AppTest script run): median "
          f"{statistics.median(server_replot):.3f} s (max {max(server_replot):.3f} s, {len(server_replot)} moves)")
    external = log.external()
    print(f"  requests to hosts other than the app: {len(external)}" + (f" {sorted(set(external))}" if external else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
