"""rtcore dashboard: how robust can a linear probe on a frozen backbone be, and does the theory predict it?

Run with ``streamlit run app.py`` (or ``make run``). This file is only the frame: session
defaults, the sidebar (only the controls the current page uses, see ``app/nav.py``) and
``st.navigation`` over the files in ``pages/``.
"""

from __future__ import annotations

import streamlit as st

from app import nav, sidebar, ui

st.set_page_config(page_title="rtcore: robustness transfer", page_icon=str(nav.ICON), layout="wide")

SPECS = nav.available_pages()
PAGES = [st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=p.default) for p in SPECS]
CONTROLS = {p.title: p.controls for p in SPECS}

ui.init_session()
page = st.navigation(PAGES)
sidebar.sidebar(CONTROLS.get(page.title, nav.ALL))
page.run()
