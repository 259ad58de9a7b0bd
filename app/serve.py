"""``python -m app.serve [streamlit options]``: the dashboard's server, ready before its first visitor.

``streamlit run app.py`` imports torch, pandas, plotly, rtcore and the app's modules on the first visitor's
script run (about 2 s of CPU here), so the first visitor of a new server waits for them. This launcher imports
them while the server starts, then hands over to Streamlit's own command line (``streamlit run app.py`` with
the options given), in the same process: every later script run finds them imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

#: what the first script run of the landing page imports (app.py, its pages and figures)
PRELOAD = ("torch", "pandas", "plotly.graph_objects", "rtcore", "app.figures", "app.jobs", "app.lesson", "app.nav",
           "app.sidebar", "app.state", "app.texts", "app.ui", "app.view")
APP = Path(__file__).resolve().parents[1] / "app.py"


def main(argv: Sequence[str] | None = None) -> None:
    """Import :data:`PRELOAD`, then run ``streamlit run app.py`` with ``argv`` (default: this command's options)."""
    for name in PRELOAD:
        importlib.import_module(name)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
