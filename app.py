"""rtcore dashboard: how robust can a linear probe on a frozen backbone be, and does the theory predict it?

Run with ``streamlit run app.py`` (or ``make run``). This file is only the frame: session
defaults, the sidebar shared by every page, and ``st.navigation`` over the files in ``pages/``.
"""

from __future__ import annotations

import streamlit as st

from app import ui

st.set_page_config(page_title="rtcore: robustness transfer", page_icon=":material/shield:", layout="wide")

# url_path values differ on purpose from the file-name slugs ("representation", "theory", ...): Streamlit
# runs the very first script run of a process (and every AppTest run) through its legacy pages/-folder
# wrapper, which would open a page whose slug matches directly, without this frame (no sidebar).
PAGES = [
    st.Page("pages/1_bound_vs_empirical.py", title="Bound vs empirical", icon=":material/insights:",
            url_path="bound", default=True),
    st.Page("pages/2_representation.py", title="Representation vulnerability", icon=":material/scatter_plot:",
            url_path="vulnerability"),
    st.Page("pages/3_loss_bound.py", title="Loss bound", icon=":material/trending_up:", url_path="loss"),
    st.Page("pages/4_compare_backbones.py", title="Compare backbones", icon=":material/compare:",
            url_path="compare"),
    st.Page("pages/5_theory.py", title="Theory / classroom", icon=":material/school:", url_path="classroom"),
]

ui.init_session()
page = st.navigation(PAGES)
ui.sidebar()
page.run()
