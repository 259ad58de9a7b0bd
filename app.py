"""rtcore dashboard: how robust can a linear probe on a frozen backbone be, and does the theory predict it?

Run with ``streamlit run app.py`` (or ``make run``). This file is only the frame: the view the URL brings
(:mod:`app.view`), session defaults, the sidebar (the view box, then only the controls the current page uses,
see ``app/nav.py``), the lesson's banner and ``st.navigation`` over the files in ``pages/``.
"""

from __future__ import annotations

import streamlit as st

from app import lesson, nav, sidebar, ui, view

st.set_page_config(page_title="rtcore: robustness transfer", page_icon=str(nav.ICON), layout="wide")

SPECS = nav.available_pages()
PAGES = [st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=p.default) for p in SPECS]
BY_TITLE = {p.title: p for p in SPECS}

view.read_url()
ui.init_session()
page = st.navigation(PAGES)
spec = BY_TITLE.get(page.title, SPECS[0])
if spec.evaluates:
    ui.prestart()  # a warm cache is read while the sidebar draws
view.controls()
sidebar.sidebar(spec.controls, spec.note)
view.write_url()
view.show_problems()
lesson.banner(spec.url_path)
page.run()
