"""The pages of the dashboard and the sidebar controls each one uses (a page shows only those)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICON = ROOT / "assets" / "icon.png"  # a local favicon: emoji and :material: favicons load from CDNs

ALL = ("backbone", "norm", "eps", "tasks", "n", "attack", "probe")
NO_CONTROLS = "This page uses no sidebar settings: "


@dataclass(frozen=True)
class PageSpec:
    """A page file, its title and icon, its URL path and the sidebar controls it uses.

    ``url_path`` differs on purpose from the file-name slug ("representation", "theory", ...):
    Streamlit runs the very first script run of a process (and every AppTest run) through its
    legacy pages/-folder wrapper, which would open a page whose slug matches directly, without
    the frame of app.py (no sidebar)."""

    path: str
    title: str
    icon: str
    url_path: str
    controls: tuple[str, ...]
    default: bool = False
    note: str = ""
    #: the page draws the sidebar selection's evaluation (started before the sidebar: :func:`app.ui.prestart`)
    evaluates: bool = False


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/1_bound_vs_empirical.py", "Bound vs empirical", ":material/insights:", "bound", ALL, default=True,
             evaluates=True),
    PageSpec("pages/2_representation.py", "Representation vulnerability", ":material/scatter_plot:",
             "vulnerability", ALL, evaluates=True),
    PageSpec("pages/3_loss_bound.py", "Loss bound", ":material/trending_up:", "loss", ALL, evaluates=True),
    PageSpec("pages/4_compare_backbones.py", "Compare backbones", ":material/compare:", "compare",
             ("norm", "eps", "tasks", "n", "attack")),
    PageSpec("pages/6_probes.py", "Probe trade-off", ":material/tune:", "tradeoff",
             ("backbone", "norm", "eps", "n", "attack")),
    PageSpec("pages/7_transfer.py", "Transfer methods", ":material/swap_horiz:", "transfer-methods",
             ("backbone", "norm", "eps", "n", "attack")),
    PageSpec("pages/8_zoo.py", "Backbone zoo", ":material/hub:", "backbone-zoo", (),
             note=NO_CONTROLS + "it draws a finished sweep (the page says how to run one, offline)."),
    PageSpec("pages/5_theory.py", "Theory / classroom", ":material/school:", "classroom", (),
             note=NO_CONTROLS + "its 2‑D picture is computed exactly, on the page."),
    PageSpec("pages/9_lesson.py", "Lesson (20 min)", ":material/co_present:", "guided-lesson", (),
             note=NO_CONTROLS + "each step opens a page with its own settings."),
)


def title(url_path: str) -> str:
    """The navigation title of the page at ``url_path`` (the path itself if none)."""
    return next((p.title for p in PAGES if p.url_path == url_path), url_path)


def available_pages() -> list[PageSpec]:
    """The pages whose files exist (a page another change has not added yet is left out)."""
    return [p for p in PAGES if (ROOT / p.path).is_file()]
