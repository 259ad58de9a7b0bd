"""The dashboard's launcher: it imports what the first script run needs, then runs ``streamlit run app.py``
with the options given, in the same process."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from app import serve


def test_the_launcher_preloads_importable_modules_and_hands_over_to_streamlit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(importlib.util.find_spec(name) is not None for name in serve.PRELOAD)
    assert serve.APP.name == "app.py" and serve.APP.is_file()
    seen: list[list[str]] = []
    from streamlit.web import cli

    monkeypatch.setattr(cli, "main", lambda: seen.append(list(sys.argv)))
    monkeypatch.setattr(sys, "argv", ["serve"])
    serve.main(["--server.port", "8502"])
    assert seen == [["streamlit", "run", str(serve.APP), "--server.port", "8502"]]
    assert all(name in sys.modules for name in serve.PRELOAD)
