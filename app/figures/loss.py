"""Loss-bound figures: bars per task at the cursor's eps and curves across eps, one panel per task (log scale,
nats). Colour = task; the quantity = fill (bars) or line style and marker (curves)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from rtcore.config import eps_text
from rtcore.tables import at_eps, table_norm

from .style import LOSS_AXIS, task_bars, task_panels

LOSS_NAMES: dict[str, str] = {"clean_loss": "clean loss", "adv_loss": "adversarial loss (attack)",
                              "loss_bound_lse": "bound (ii): log-sum-exp", "loss_bound": "bound (i): max spread × Δ"}
LOSS_BARS: dict[str, dict[str, object]] = {
    "clean_loss": {"opacity": 0.45},
    "adv_loss": {"opacity": 1.0},
    "loss_bound_lse": {"pattern": {"shape": ".", "fillmode": "overlay", "fgcolor": "white", "size": 8}},
    "loss_bound": {"pattern": {"shape": "/", "fillmode": "overlay", "fgcolor": "white", "size": 9}}}
LOSS_KEY = ("light = clean loss · solid = adversarial loss (attack) · dotted = bound (ii) log-sum-exp · "
            "hatched = bound (i)")
LOSS_DASH: dict[str, str] = {"adv_loss": "solid", "loss_bound_lse": "dashdot", "loss_bound": "dash"}
#: ticks of the log axis, written out (plotly's short log ticks read "5" for 0.5 and for 5)
LOG_TICKS = dict(tickvals=[k * 10.0 ** d for d in range(-3, 4) for k in (1, 2, 5)], tickformat="~g")
#: ... and in the small panels of the curves, the decades only (ticks 1-2 px apart otherwise)
LOG_DECADES = dict(tickvals=[10.0 ** d for d in range(-3, 4)], tickformat="~g")


def loss_at_eps(summary: pd.DataFrame, eps: float, tasks: Sequence[str] = (), plot: str = "full") -> go.Figure:
    """Grouped bars per task at one eps: clean loss, adversarial loss, bound (ii), bound (i), on a log scale;
    value labels (3 significant digits) only where they fit; a task still computing says so on its axis label."""
    rows = at_eps(summary, eps).drop_duplicates("task").set_index("task") if len(summary) else pd.DataFrame()
    tasks = list(dict.fromkeys([*tasks, *rows.index]))
    fig = task_bars(rows, tasks, rows.index, LOSS_BARS, LOSS_NAMES,
                    f"Mean loss per task at ε = {eps_text(eps, table_norm(summary))}", LOSS_AXIS, LOSS_KEY, plot,
                    fmt="{:.3g}", ci=False)
    fig.update_yaxes(type="log", **LOG_TICKS)
    return fig


def loss_curves(summary: pd.DataFrame, current_eps: float | None = None) -> go.Figure:
    """One panel per task (its colour): adversarial loss (solid), bound (ii) (dash-dot) and bound (i) (dashed)
    against eps; at eps = 0 all three are the clean loss."""
    fig = task_panels(summary, "task", LOSS_DASH, LOSS_NAMES, "Loss against ε (at ε = 0 all equal the clean loss)",
                      current_eps, "loss (nats, log)", fmt=".4g")
    fig.update_yaxes(type="log", **LOG_DECADES)
    return fig
