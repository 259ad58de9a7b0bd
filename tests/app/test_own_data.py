"""Tasks from your own data in the dashboard: an uploaded .zip of the image-folder layout becomes a task on every
page and in the reproducing command; an upload over the limit is refused before anything is stored; a bad server
path is a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import ui, user_tasks
from tests.app.conftest import use_small_defaults, zipped_task

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("own-data-cache")


def test_an_uploaded_task_joins_every_page_and_the_script(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    use_small_defaults(monkeypatch, cache_dir)
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.sidebar.file_uploader(key="user_task_file").upload("weather.zip", zipped_task(), "application/zip").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    ref = at.session_state["user_tasks"][0]
    assert ref.startswith("folder:") and ref in at.session_state["tasks"] and "task-uploads" in ref
    table = at.table[0].value
    assert list(table["task"]) == ["shapes", "weather"], "drawn with the built-in task"
    assert all("weather" in c.proto.spec for c in at.get("plotly_chart")), "in every chart (no figure of the last job)"
    at.toggle(key="landing_show_script").set_value(True).run()
    script = at.main.code[0].value
    assert f"--tasks shapes {ref}" in script or f"--tasks shapes '{ref}'" in script, "in the reproducing command"
    at.switch_page("pages/3_loss_bound.py").run()
    assert not at.exception and "weather" in at.table[0].value["task"].tolist()
    monkeypatch.setattr(ui, "evaluate", lambda *args, **kw: None)  # the task choice only, no probe evaluation
    monkeypatch.setattr(ui, "prestart", lambda: None)
    at.switch_page("pages/6_probes.py").run()
    assert "weather (your data)" in at.selectbox(key="probes_task").options


def test_an_upload_over_the_limit_is_refused_before_it_is_stored(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    use_small_defaults(monkeypatch, tmp_path / "cache")
    monkeypatch.setattr(user_tasks, "MAX_UPLOAD_BYTES", 1000)
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["tasks"] = []  # no evaluation needed
    at.run()
    at.sidebar.file_uploader(key="user_task_file").upload("big.zip", zipped_task(), "application/zip").run()
    assert not at.exception
    assert any("above the" in e.value for e in at.sidebar.error)
    assert at.session_state["user_tasks"] == []
    assert not (tmp_path / "cache" / "task-uploads").exists() or not any((tmp_path / "cache" / "task-uploads").iterdir())


def test_a_bad_server_path_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_small_defaults(monkeypatch, tmp_path / "cache")
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["tasks"] = []
    at.run()
    at.sidebar.text_input(key="user_task_path").set_value(str(tmp_path / "nowhere")).run()
    at.sidebar.button(key="user_task_add").click().run()
    assert not at.exception
    assert any("nowhere" in e.value for e in at.sidebar.error) and at.session_state["user_tasks"] == []


def test_a_small_task_brings_n_down_instead_of_blanking_the_page(monkeypatch: pytest.MonkeyPatch,
                                                                   cache_dir: Path) -> None:
    """An own-data task of 24 test images with n = 50: n comes down to 20 for every task (the slider offers no
    more), the message and the caption say so, the page draws, and no server folder is shown."""
    use_small_defaults(monkeypatch, cache_dir)
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["n"] = 50  # more than the 24 test images of the uploaded task
    at.run()
    at.sidebar.file_uploader(key="user_task_file").upload("weather.zip", zipped_task(), "application/zip").run()
    assert not at.exception and not at.main.error, [e.value for e in [*at.exception, *at.main.error]]
    assert at.session_state["n"] == 20 and max(at.sidebar.select_slider(key="n").options) == "20"
    assert "n = 20 test points per task" in " ".join(c.value for c in at.sidebar.caption)
    caption = next(c.value for c in at.caption if "test points per task" in c.value)
    assert "n = 20 test points per task" in caption and str(cache_dir) not in caption, caption


def test_the_same_folder_by_path_and_by_upload_is_one_task(monkeypatch: pytest.MonkeyPatch, cache_dir: Path,
                                                          tmp_path: Path) -> None:
    """Adding the same folder by path and by upload blanked the landing page with one error that showed the
    server's cache path: now the second is refused in the sidebar, naming the task, and the page stays."""
    from tests.app.conftest import image_folder

    use_small_defaults(monkeypatch, cache_dir)
    folder = image_folder(tmp_path)
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.sidebar.text_input(key="user_task_path").set_value(str(folder)).run()
    at.sidebar.button(key="user_task_add").click().run()
    at.sidebar.file_uploader(key="user_task_file").upload("weather.zip", zipped_task(), "application/zip").run()
    assert not at.exception and not at.main.error, [e.value for e in at.main.error]
    message = " ".join(e.value for e in at.sidebar.error)
    assert "already a task here: weather" in message and "folder:" not in message, "named as in the task list"
    shown = message + " ".join(c.value for c in at.sidebar.caption)
    assert str(cache_dir) not in shown and str(Path.home()) not in shown, "no server folder is shown"
    assert len(at.session_state["user_tasks"]) == 1 and at.get("plotly_chart"), "the landing page still draws"
