"""Plotly figures of the dashboard: pure functions from the library's tidy tables to figures (no streamlit,
no numeric work). :mod:`.style` is shared (with :mod:`.look`: the colours and the display modes); every other
module imports only from it, never from each other."""

from .accuracy import BAR_KEY, TRADEOFF_PANELS, accuracy_at_eps, accuracy_curves, calibration_scatter, probe_tradeoff
from .compare import compare_at_eps, compare_curves
from .look import presenting
from .loss import LOSS_NAMES, loss_at_eps, loss_curves
from .style import ACC_AXIS, DELTA_AXIS, LOSS_AXIS, METRIC_NAMES, MISSING, PENDING, REL_AXIS, RHO_AXIS, ci_text, \
    colour_of, colours_for
from .toy import linear_toy_figure
from .transfer import block_distance_bars, method_curves, method_delta_curves
from .vulnerability import STATUS, delta_curves, delta_distribution, gallery, relative_delta_curves, \
    rho_delta_scatter, status_of
from .zoo import calibration_figure

__all__ = ["ACC_AXIS", "BAR_KEY", "DELTA_AXIS", "LOSS_AXIS", "LOSS_NAMES", "METRIC_NAMES", "MISSING", "PENDING",
           "REL_AXIS", "RHO_AXIS", "STATUS", "TRADEOFF_PANELS", "accuracy_at_eps", "accuracy_curves",
           "block_distance_bars", "calibration_figure", "calibration_scatter", "ci_text", "colour_of", "colours_for",
           "compare_at_eps", "compare_curves", "delta_curves", "delta_distribution", "gallery", "linear_toy_figure",
           "loss_at_eps", "loss_curves", "method_curves", "method_delta_curves", "presenting", "probe_tradeoff",
           "relative_delta_curves", "rho_delta_scatter", "status_of"]
