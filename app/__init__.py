"""The Streamlit dashboard's code: state and defaults, backbones and uploads, background jobs,
exports, figures, the theory page's exact toy model, and the Streamlit helpers the pages share.

The pages in ``pages/`` only draw; ``app.py`` is the entry point.
"""
