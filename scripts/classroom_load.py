#!/usr/bin/env python3
"""A class on one server: N headless Chromium sessions open the dashboard at once; per-session times and the
server's CPU and memory, cold and warm.

Starts ``streamlit run app.py`` on a free 127.0.0.1 port (real defaults unless ``--small``) and, with one
headless Chromium (Debian's, driven by Playwright), opens N sessions at once in three phases:

* cold: an empty ``RTCORE_CACHE_DIR`` and a fresh server;
* warm: the same server, N new sessions (every result in memory);
* new server: a fresh server on the now warm disk cache and one visitor alone; then another fresh server and
  N sessions at once (the README's class: every session joins the one job while it runs).

For each session: seconds to the first chart and to the complete landing page (every chart drawn and
"All results ready"), whether the page then converged (two seconds later: no progress bar and nothing
"computing…" left), the page's websocket bytes, and errors (an exception on the page, a timeout). For each
phase: the server's CPU seconds (user + system, from /proc) per view, its CPU in the ten quiet seconds after
every page finished (work done after the pages said complete), its peak memory (VmHWM), and the CPU seconds
of the co-located headless browsers (the phase's reaped children). Prints a table and, with ``--out``, writes
the numbers as JSON. The servers and the browser are always stopped.

    python scripts/classroom_load.py [--sessions 12] [--small] [--timeout 900] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


def _helpers() -> ModuleType:
    """The server and browser helpers of scripts/time_to_first_plot.py (one copy of them)."""
    spec = importlib.util.spec_from_file_location("time_to_first_plot", HERE / "time_to_first_plot.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ttfp = _helpers()


#: a page that still computes: a progress bar, or a value not computed yet (app.figures.style.PENDING)
PENDING = "computing…"
QUIET_S = 10.0


@dataclass
class Session:
    first_chart: float | None = None
    complete: float | None = None
    converged: bool = False
    ws_bytes: int = 0
    error: str | None = None


@dataclass
class Phase:
    name: str
    sessions: list[Session] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    quiet_cpu_s: float = 0.0
    browser_cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        first = [s.first_chart for s in self.sessions if s.first_chart is not None]
        done = [s.complete for s in self.sessions if s.complete is not None]
        return {"phase": self.name, "sessions": len(self.sessions),
                "first_chart_median_s": statistics.median(first) if first else None,
                "first_chart_max_s": max(first) if first else None,
                "complete_median_s": statistics.median(done) if done else None,
                "complete_max_s": max(done) if done else None,
                "converged": sum(s.converged for s in self.sessions),
                "errors": [s.error for s in self.sessions if s.error],
                "server_cpu_s": self.cpu_s, "server_cpu_per_view_s": self.cpu_s / max(len(self.sessions), 1),
                "server_cpu_after_complete_s": self.quiet_cpu_s, "browsers_cpu_s": self.browser_cpu_s,
                "server_peak_rss_mb": self.peak_rss_mb,
                "ws_kb_median": statistics.median(s.ws_bytes for s in self.sessions) / 1024 if self.sessions else 0}


def server_pid(url: str) -> int:
    """The pid of the streamlit process listening on ``url``'s port (from /proc/net/tcp and the fds)."""
    port = int(url.rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":  # LISTEN
                    inodes.add(parts[9])
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]") in inodes:
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_session(browser: Any, url: str, timeout_s: float) -> Session:
    """Open the landing page in a new browser context; time the first chart and the complete page."""
    s = Session()
    context = await browser.new_context(viewport={"width": 1500, "height": 1000})
    await context.route("**/*", lambda route: asyncio.ensure_future(
        route.continue_() if ttfp._is_local(route.request.url) else route.abort()))
    page = await context.new_page()

    def on_ws(ws: Any) -> None:
        ws.on("framereceived", lambda payload: setattr(s, "ws_bytes", s.ws_bytes + len(payload)))

    page.on("websocket", on_ws)
    t0 = time.perf_counter()
    try:
        await page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        await page.wait_for_selector(ttfp.DATA_CHART, state="attached", timeout=timeout_s * 1000)
        s.first_chart = time.perf_counter() - t0
        await page.wait_for_function(
            """([chart, ready, n]) => document.querySelectorAll(chart).length >= n
                 && document.body.innerText.includes(ready)""",
            arg=[ttfp.CHART, ttfp.READY, ttfp.LANDING_CHARTS], timeout=timeout_s * 1000, polling=250)
        s.complete = time.perf_counter() - t0
        await page.wait_for_timeout(2000)
        s.converged = (await page.query_selector(ttfp.PROGRESS) is None
                       and PENDING not in await page.evaluate("document.body.innerText"))
        if await page.query_selector(ttfp.EXCEPTION) is not None:
            s.error = "the page shows an exception"
    except Exception as e:  # noqa: BLE001 - reported per session
        s.error = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    finally:
        await context.close()
    return s


async def phase(name: str, url: str, exe: str, n: int, timeout_s: float) -> Phase:
    from playwright.async_api import async_playwright

    pid = server_pid(url)
    result = Phase(name)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=exe, args=ttfp.CHROMIUM_ARGS, headless=True)
        try:
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            result.sessions = list(await asyncio.gather(*(one_session(browser, url, timeout_s) for _ in range(n))))
            result.cpu_s, result.wall_s = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
        finally:
            await browser.close()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.browser_cpu_s = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    quiet0 = cpu_seconds(pid)
    await asyncio.sleep(QUIET_S)
    result.quiet_cpu_s = cpu_seconds(pid) - quiet0
    result.peak_rss_mb = peak_rss_mb(pid)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=12, help="sessions opened at once (default 12)")
    ap.add_argument("--small", action="store_true", help="test-sized defaults (n=20, task shapes)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one session may wait (default 900)")
    ap.add_argument("--cache", type=Path, help="use this (warm) cache folder and skip the cold phase")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args(argv)
    exe = ttfp.find_chromium()
    if exe is None:
        print("no Chromium found: install Debian's chromium (scripts/install_browser.sh)", file=sys.stderr)
        return 2
    env = dict(ttfp.SMALL_ENV) if args.small else {}
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="rtcore-class-") as tmp:
        env["RTCORE_CACHE_DIR"] = str(args.cache or tmp)
        with ttfp.streamlit_server(env) as url:
            if args.cache is None:
                phases.append(asyncio.run(phase("cold: empty cache, new server", url, exe, args.sessions,
                                                args.timeout)))
            else:
                asyncio.run(phase("warm-up", url, exe, 1, args.timeout))
            phases.append(asyncio.run(phase("warm: same server", url, exe, args.sessions, args.timeout)))
        with ttfp.streamlit_server(env) as url:
            phases.append(asyncio.run(phase("new server, warm disk cache: one visitor alone", url, exe, 1,
                                            args.timeout)))
        with ttfp.streamlit_server(env) as url:  # the README's class: N at once on a new server, sharing one job
            phases.append(asyncio.run(phase("new server, warm disk cache: N at once", url, exe,
                                            args.sessions, args.timeout)))
    rows = [p.summary() for p in phases]
    print(f"{args.sessions} sessions at once, {'small' if args.small else 'real'} defaults, "
          f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f}")
    for r in rows:
        fmt = (lambda v: "   -  " if v is None else f"{v:6.1f}")  # noqa: E731
        print(f"  {r['phase']:48s} first chart median {fmt(r['first_chart_median_s'])} s max "
              f"{fmt(r['first_chart_max_s'])} s | complete median {fmt(r['complete_median_s'])} s max "
              f"{fmt(r['complete_max_s'])} s | converged {r['converged']}/{r['sessions']} | server CPU "
              f"{r['server_cpu_per_view_s']:.2f} s/view, {r['server_cpu_after_complete_s']:.2f} s in the "
              f"{QUIET_S:.0f} s after | browsers {r['browsers_cpu_s']:.0f} s CPU | peak "
              f"{r['server_peak_rss_mb']:.0f} MB | ws {r['ws_kb_median']:.0f} KB | errors {len(r['errors'])}")
        for e in r["errors"][:3]:
            print(f"      error: {e}")
    if args.out:
        args.out.write_text(json.dumps({"sessions": args.sessions, "small": args.small, "phases": rows,
                                        "per_session": {p.name: [asdict(s) for s in p.sessions] for p in phases}},
                                       indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
