"""The Streamlit dashboard's code: widgets and session state, the session's side of the library's scheduler
(:mod:`app.jobs`), the view in the URL, uploads and the figures (:mod:`app.figures`); its longer prose is in
``assets/text/``. Every number, table and file to download comes from ``rtcore``.

The pages in ``pages/`` only draw; ``app.py`` is the entry point.
"""
