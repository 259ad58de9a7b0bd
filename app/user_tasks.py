"""Tasks from your own data: a folder on the server (``train/<class>/*``, ``test/<class>/*``), or an uploaded
``.zip`` of that layout or ``.npz``. The library checks and stores them (:func:`rtcore.data.check_task_ref`,
:func:`rtcore.data.store_task_upload`: size limit before anything is stored, unsafe archives refused,
unused uploads pruned); the dashboard keeps the references this session added, which then appear with the
built-in tasks on every page and in the reproducing command."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from rtcore.config import default_cache_dir
from rtcore.data import TaskUnavailableError, store_task_upload, touch_task_upload, user_ref_of_path
from rtcore.models.uploads import MAX_UPLOAD_BYTES
from rtcore.runs import selection

from .state import MAX_UPLOAD_MB, private, task_label

UPLOAD_TYPES = ["zip", "npz"]


def add(ref: str) -> str:
    """Add your own task ``ref`` to this session's selection and choose it (:func:`rtcore.runs.selection.with_task`:
    the same data twice, by path and by upload, is refused); return its reference."""
    task, changes = selection.with_task(st.session_state.to_dict(), ref)
    st.session_state.update(changes)
    return task


def _report(add_task: Callable[[], str]) -> None:
    """In a callback (it runs before the widgets, so the new task can be selected): add the task that
    ``add_task()`` adds, and keep the form's message, what was added or why not."""
    st.session_state["user_task_open"] = True
    try:
        added = add_task()
        st.session_state["user_task_msg"] = ("info", f"Added {task_label(added)}; n = {st.session_state['n']} test "
                                                     "points per task.")
    except (ValueError, TaskUnavailableError) as e:
        st.session_state["user_task_msg"] = ("error", private(str(e)))


def _add_path() -> None:
    _report(lambda: add(user_ref_of_path(st.session_state.get("user_task_path", ""))))


def _uploaded() -> None:
    up = st.session_state.get("user_task_file")
    st.session_state["user_task_open"] = True
    if up is not None:
        done: dict[str, str] = st.session_state.setdefault("user_task_uploads", {})
        _report(lambda: done[up.file_id] if up.file_id in done else done.setdefault(
            up.file_id, add(store_task_upload(up.name, up.getvalue(), MAX_UPLOAD_BYTES, default_cache_dir()))))


def controls() -> None:
    """The sidebar's form: a server path, or an upload (size-checked before it is stored)."""
    st.text_input("Folder or .npz on the server", key="user_task_path", placeholder="/data/weather or /data/x.npz",
                  help="A folder with train/<class>/ and test/<class>/ image folders, or an .npz with x_train, "
                       "y_train, x_test, y_test.")
    st.button("Add this task", key="user_task_add", on_click=_add_path)
    st.file_uploader(f"…or upload a .zip of that layout or an .npz (at most {MAX_UPLOAD_MB} MB)", type=UPLOAD_TYPES,
                     key="user_task_file", on_change=_uploaded)
    for ref in st.session_state.get("user_task_uploads", {}).values():
        touch_task_upload(ref)  # in use: kept by the pruning
    msg = st.session_state.get("user_task_msg")
    if msg:
        (st.error if msg[0] == "error" else st.caption)(msg[1])
