"""Tasks from your own data: a folder on the server (``train/<class>/*``, ``test/<class>/*``), or an uploaded
``.zip`` of that layout or ``.npz``. The library checks and stores them (:func:`rtcore.data.check_task_ref`,
:func:`rtcore.data.unpack_task_upload`: size limit before anything is stored, unsafe archives refused,
unused uploads pruned); the dashboard keeps the references this session added, which then appear with the
built-in tasks on every page and in the reproducing command."""

from __future__ import annotations

import streamlit as st

from rtcore.config import default_cache_dir
from rtcore.data import (
    FOLDER_PREFIX,
    TaskUnavailableError,
    check_task_ref,
    prune_task_uploads,
    task_upload_dir,
    unpack_task_upload,
)
from rtcore.data.uploads import touch_task_upload
from rtcore.models.uploads import MAX_UPLOAD_BYTES
from rtcore.runs.selection import n_cap, sample_size_options
from rtcore.runs.spec import task_identity

from .state import MAX_UPLOAD_MB, private, task_label

UPLOAD_TYPES = ["zip", "npz"]


def add(ref: str) -> str:
    """Check ``ref`` (``folder:PATH`` / ``npz:PATH``), add it to this session's tasks and select it; return it.
    The same data added twice (by path and by upload) is refused with a message, not a second task."""
    canonical = check_task_ref(ref)
    s = st.session_state
    same = [t for t in s["user_tasks"] if t != canonical and task_identity(t) == task_identity(canonical)]
    if same:
        raise ValueError(f"this data is already a task here: {task_label(same[0])}")
    if canonical not in s["user_tasks"]:
        s["user_tasks"] = [*s["user_tasks"], canonical]
    if canonical not in s["tasks"]:
        s["tasks"] = [*s["tasks"], canonical]
    options = sample_size_options(n_cap(s["tasks"]))
    if s["n"] not in options:  # a small test split: n comes down to it for every task, the page keeps drawing
        s["n"] = options[-1]
    return canonical


def save_upload(filename: str, data: bytes) -> str:
    """Check and store an uploaded ``.zip`` / ``.npz`` (refused above the size limit before anything is
    stored); return its task reference. Unused uploads are pruned first."""
    dest = task_upload_dir(default_cache_dir())
    prune_task_uploads(dest)
    return unpack_task_upload(filename, data, dest, MAX_UPLOAD_BYTES, cache_dir=default_cache_dir())


def _add_path() -> None:
    path = st.session_state.get("user_task_path", "").strip()
    st.session_state["user_task_open"] = True
    if not path:
        st.session_state["user_task_msg"] = ("error", "Type the path of a folder or an .npz file on the server.")
        return
    ref = path if path.startswith(("folder:", "npz:")) else \
        (f"npz:{path}" if path.lower().endswith(".npz") else f"{FOLDER_PREFIX}{path}")
    try:
        st.session_state["user_task_msg"] = ("info", _added(add(ref)))
    except (ValueError, TaskUnavailableError) as e:
        st.session_state["user_task_msg"] = ("error", private(str(e)))


def _uploaded() -> None:
    """Callback of the uploader (it runs before the widgets, so the new task can be selected)."""
    up = st.session_state.get("user_task_file")
    st.session_state["user_task_open"] = True
    if up is None:
        return
    done: dict[str, str] = st.session_state.setdefault("user_task_uploads", {})
    try:
        if up.file_id not in done:
            done[up.file_id] = add(save_upload(up.name, up.getvalue()))
        st.session_state["user_task_msg"] = ("info", _added(done[up.file_id]))
    except (ValueError, TaskUnavailableError) as e:
        st.session_state["user_task_msg"] = ("error", private(str(e)))


def _added(ref: str) -> str:
    return f"Added {task_label(ref)}; n = {st.session_state['n']} test points per task."


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
