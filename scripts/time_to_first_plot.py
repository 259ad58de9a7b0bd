#!/usr/bin/env python3
"""Time from opening the dashboard to its first chart, in headless Chromium, cold and warm.

Starts ``streamlit run app.py`` on a free 127.0.0.1 port with the real defaults (unless
``--small``), opens the landing page in Debian's Chromium driven by Playwright, and measures:

* cold: a fresh, empty ``RTCORE_CACHE_DIR`` and a fresh server process;
* warm: the same server and cache, a new browser session (a second visit);
* warm, new server: a new server process on the same disk cache (a restart).

For each: seconds until the first plotly chart is drawn, and until the page is complete
(no progress bar left, all of the landing page's charts drawn). Prints the numbers and exits.
The server and the browser are always stopped; all traffic stays on 127.0.0.1.

    python scripts/time_to_first_plot.py [--small] [--screenshots DIR] [--timeout 900]

The helpers (``streamlit_server``, ``chromium``, ``open_page``) are reused by tests/test_browser.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
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
PROGRESS = '[data-testid="stProgress"]'
READY = "All results ready"  # written by pages/_ui.py when the page's evaluation has finished
EXCEPTION = '[data-testid="stException"]'
LANDING_CHARTS = 3
SMALL_ENV = {"RTCORE_DASHBOARD_N": "20", "RTCORE_DASHBOARD_TASKS": "shapes"}


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
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:  # noqa: S310 - localhost only
            return r.status == 200
    except OSError:
        return False


@contextmanager
def streamlit_server(env: Mapping[str, str], *, log_path: Path | None = None,
                     start_timeout: float = 120.0) -> Iterator[str]:
    """Run ``streamlit run app.py`` on a free 127.0.0.1 port; yield its URL; always stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
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


def _local_only(route: Any) -> None:
    host = urlparse(route.request.url).hostname
    if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def open_page(browser: Any, url: str, *, width: int = 1500, height: int = 1000, dark: bool = False) -> Any:
    """A new browser session (context) on ``url``; requests to other hosts are blocked."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme="dark" if dark else "light")
    page = context.new_page()
    page.route("**/*", _local_only)
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    return page


def wait_first_chart(page: Any, timeout_s: float) -> None:
    page.wait_for_selector(CHART, state="visible", timeout=timeout_s * 1000)


def wait_complete(page: Any, timeout_s: float, charts: int = LANDING_CHARTS) -> None:
    """Until the page says its evaluation is finished and at least ``charts`` charts are drawn."""
    page.wait_for_function(
        """([chart, ready, n]) => document.querySelectorAll(chart).length >= n
             && document.body.innerText.includes(ready)""",
        arg=[CHART, READY, charts], timeout=timeout_s * 1000, polling=250)


def wait_idle(page: Any, timeout_s: float) -> None:
    """Until the script run has finished (Streamlit's running indicator is gone)."""
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_s * 1000)


def measure(browser: Any, url: str, timeout_s: float, shot: Path | None = None) -> tuple[float, float]:
    """Seconds to the first chart and to the complete landing page, in a new browser session."""
    t0 = time.perf_counter()
    page = open_page(browser, url)
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
        with chromium(exe) as browser:
            log = args.log / "server-1.log" if args.log else None
            with streamlit_server(env, log_path=log) as url:
                results["cold (empty cache, new server)"] = measure(
                    browser, url, args.timeout, args.screenshots / "cold.png" if args.screenshots else None)
                results["warm (same server, new browser session)"] = measure(
                    browser, url, args.timeout, args.screenshots / "warm.png" if args.screenshots else None)
            log = args.log / "server-2.log" if args.log else None
            with streamlit_server(env, log_path=log) as url:
                results["warm (disk cache, new server)"] = measure(browser, url, args.timeout)
    defaults = "small test defaults (n=20, shapes)" if args.small else "real defaults"
    print(f"time to first plot, {defaults}:")
    for name, (first, complete) in results.items():
        print(f"  {name:42s} first chart {first:7.1f} s   complete page {complete:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
