"""The Streamlit dashboard's code: widgets and session state, jobs that run the library's planned units under
the device lock, uploads, exports, and the figures (:mod:`app.figures`). Every number comes from ``rtcore``.

The pages in ``pages/`` only draw; ``app.py`` is the entry point.
"""
