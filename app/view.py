"""The view: the selection in the URL (read when the URL brings one, written whenever it changes), presenter
mode, a frozen view, the share box (the URL and a QR code) and how charts are drawn (presenter look, PNG or
SVG download from each chart's camera button, figures shared by every session).

A URL such as ``/compare?backbone=fmnist-cnn-standard&norm=linf&eps=8/255`` reopens that page and selection (the
query is :func:`rtcore.runs.selection.to_query` of the session's selection); a value that is not valid here is
named in a message and left at its default, never a crash.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import plotly.graph_objects as go
import segno
import streamlit as st

from rtcore.runs import selection

from .figures import presenting

#: the view box's widget keys (on every page)
VIEW_KEYS = (*selection.FLAGS, "chart_format")
FORMATS = {"png": "PNG", "svg": "SVG"}
LOCAL = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
#: presenter mode outside the charts: the page's text, tables and the values inside its widgets (chips, choices,
#: numbers) large enough for the back of a room
PRESENT_CSS = ("<style>.stMainBlockContainer :is(p, li, td, th) {font-size: 1.3rem !important; line-height: 1.45} "
               ".stMainBlockContainer :is([data-baseweb='select'] div, [data-baseweb='tag'] span, input) "
               "{font-size: 1.2rem !important}</style>")


# ---------------------------------------------------------------- Streamlit glue

def read_url() -> None:
    """Apply the URL's selection when it brings one this session has not written itself (a shared link, a
    lesson step); runs before the widgets are drawn. Problems are kept for :func:`show_problems`."""
    params = st.query_params.to_dict()
    s = st.session_state
    if not params or params == s.get("_view_written"):
        return
    values, problems = selection.from_query(params)
    for norm, added in values.pop("extra_eps", {}).items():
        s.update(selection.with_eps(s.to_dict(), norm, added))
    s.update(values)
    s["_view_problems"], s["_view_problems_for"] = problems, None


def write_url() -> None:
    """Write the selection into the URL when it changed (after the sidebar's widgets took their values); the
    link's problems are shown until the selection changes."""
    s = st.session_state
    params = selection.to_query(s)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    s["_view_written"] = params
    if s.get("_view_problems_for") is None:
        s["_view_problems_for"] = params
    elif params != s["_view_problems_for"]:
        s["_view_problems"] = []


def show_problems() -> None:
    problems = st.session_state.get("_view_problems", [])
    if problems:
        st.warning("**This link has values this server cannot show.**\n\n" + "\n".join(f"- {p}" for p in problems))


def present() -> bool:
    return bool(st.session_state.get("present"))


def frozen() -> bool:
    return bool(st.session_state.get("frozen"))


def share_url() -> str:
    """The URL students can open: this page and selection, on the server's network address when the browser
    reached it as localhost."""
    base = urlsplit(st.context.url or "http://localhost:8501/")
    host = base.hostname or "localhost"
    if host in LOCAL:
        from streamlit import net_util

        host = net_util.get_internal_ip() or host
    netloc = f"{host}:{base.port}" if base.port else host
    query = urlencode(selection.to_query(st.session_state), safe="/,:")
    return urlunsplit((base.scheme or "http", netloc, base.path or "/", query, ""))


@functools.lru_cache(maxsize=64)
def qr_png(text: str) -> bytes:
    """A QR code of ``text`` as PNG bytes (segno; large modules, so a phone reads it from the back of a room);
    made once per URL (a class opens the same view)."""
    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=8, border=2)
    return buf.getvalue()


def controls() -> None:
    """The sidebar's view box: presenter mode, freeze, share (URL and QR code) and the charts' download format."""
    sb = st.sidebar
    sb.toggle("Presenter mode", key="present", help="Large chart text (18 px and more), thicker lines, short "
                                                    "captions: readable from the back of a room (present=1).")
    sb.toggle("Freeze this view", key="frozen", help="Locks the sidebar's controls so the view stays as it is while "
                                                     "you talk; a shared link carries it (frozen=1).")
    with sb.popover("Share this view", icon=":material/qr_code_2:", width="stretch"):
        url = share_url()
        st.code(url, language=None, wrap_lines=True)
        st.image(qr_png(url), width=240, caption="Scan to open this view")
        st.caption("The page and every sidebar choice; not your own data or an uploaded checkpoint (they stay on "
                   "this server).")
    sb.radio("Chart download (camera icon on each chart)", list(FORMATS), key="chart_format", horizontal=True,
             format_func=FORMATS.get)
    if frozen():
        sb.info("Frozen view: the controls are locked. Turn *Freeze* off to explore on your own.")
    if present():
        st.html(PRESENT_CSS)


def note(text: str, short: str | None = None) -> None:
    """A caption; in presenter mode its short form, or nothing when it has none."""
    if not present():
        st.caption(text)
    elif short:
        st.caption(short)


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure(name: str, key: tuple[object, ...], _build: Callable[[], go.Figure]) -> go.Figure:
    """A figure built once per (builder, result version, arguments, look) and shared by every session: never
    mutated."""
    return _build()


def chart(key: str, build: Callable[..., go.Figure], *args: Any, cache: tuple[object, ...] | None = None) -> None:
    """Draw ``build(*args)`` in the session's look; with ``cache`` (the tables' key) the figure is built once and
    shared. Its camera button downloads it as PNG or SVG (the sidebar's choice), drawn by the browser."""
    on = present()

    def made() -> go.Figure:
        with presenting(on):
            return build(*args)

    fig = made() if cache is None else _figure(f"{build.__module__}.{build.__name__}",
                                                (*cache, on, *map(_hashable, args[1:])), made)
    fmt = st.session_state.get("chart_format", "png")
    config = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"],
              "toImageButtonOptions": {"format": fmt, "filename": f"rtcore-{key}", "scale": 2 if fmt == "png" else 1}}
    st.plotly_chart(fig, theme=None, key=f"{key}_{fmt}", config=config)  # a new format: a new element (the
    # browser reads a chart's config once)


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v if isinstance(v, (str, int, float, type(None))) else id(v)
