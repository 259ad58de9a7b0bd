"""The sidebar: only the controls the current page uses (see :mod:`app.nav`).

The eps control is a cursor over computed results: a select slider over the library's grid
(k/255 for linf, k·0.1 for l2) and the eps the user added. Moving it never starts a computation;
an eps off the grid is an explicit "add" action (with a confirmation beyond 32 grid steps).
"""

from __future__ import annotations

import streamlit as st

import rtcore
from rtcore import BackboneUnavailableError
from rtcore.attacks import describe
from rtcore.config import NORMS, default_eps, eps_grid, eps_text, nearest_eps
from rtcore.models.registry import backbone_info
from rtcore.models.uploads import CheckpointUploadError, checkpoint_ref, save_checkpoint_upload
from rtcore.probes import list_probes
from rtcore.runs import selection

from . import state, user_tasks
from .nav import ALL
from .ui import task_choices
from .view import frozen


def sidebar(controls: tuple[str, ...] = ALL, note: str = "") -> None:
    """Draw the controls named in ``controls`` (backbone, norm, eps, tasks, n, attack, probe), locked while the
    view is frozen; a page without controls says why in ``note``."""
    sb = st.sidebar
    off = frozen()
    if not controls:
        sb.caption(note)
        return
    if "backbone" in controls:
        _backbone(off)
    if "norm" in controls:
        sb.radio("Threat model (norm)", NORMS, key="norm", horizontal=True, format_func=state.NORM_LABELS.get,
                 on_change=_reset_eps, disabled=off,
                 help="Changing the norm moves ε to that norm's default (4/255 or 0.4).")
    if "eps" in controls:
        eps_control(off)
    if "tasks" in controls:
        sb.multiselect("Downstream tasks", task_choices(), key="tasks", format_func=state.task_label, disabled=off,
                       help="Default: the tasks that work offline. Tasks marked 'needs download' are skipped "
                            "with a message when their data is not on this machine.")
        if not off:
            with sb.expander("Add a task from your own data", expanded=bool(st.session_state.get("user_task_open"))):
                user_tasks.controls()
    if "n" in controls:
        sizes = selection.sample_size_options(selection.n_cap(st.session_state["tasks"]))
        sb.select_slider("Test points per task (n)", sizes, key="n", disabled=off,
                         help="A seeded random subset of each task's test split. Larger n: narrower intervals, "
                              "longer runs.")
    if "attack" in controls:
        sb.radio("Attack strength", list(rtcore.STRENGTHS), key="attack", horizontal=True, disabled=off,
                 help="\n\n".join(f"**{k}**: {describe(k)}" for k in rtcore.STRENGTHS))
        sb.caption(f"**{st.session_state['attack']}**: {describe(st.session_state['attack'])}")
    if "probe" in controls:
        sb.radio("Linear probe (head)", list_probes(), key="probe", horizontal=True, disabled=off,
                 help="The head trained on the frozen features; the Probe trade-off page compares them all.")


def _backbone(off: bool) -> None:
    sb = st.sidebar
    sb.selectbox("Backbone g (frozen)", state.backbone_choices(), key="backbone", format_func=state.backbone_label,
                 disabled=off, help="Bundled backbones work offline; timm entries need their pretrained weights "
                                    "(Hugging Face cache or download); or upload your own safetensors checkpoint.")
    if st.session_state["backbone"] == state.UPLOAD_CHOICE:
        _upload_controls()
    else:
        st.session_state["upload_ref"] = None
        try:
            sb.caption(backbone_info(st.session_state["backbone"]).description)
        except (ValueError, BackboneUnavailableError):
            pass  # a name the registry cannot describe here: no caption


def _reset_eps() -> None:
    st.session_state["eps"] = default_eps(st.session_state["norm"])
    _clear_msg()


# ---------------------------------------------------------------- eps: cursor and "add an eps"

def eps_control(off: bool = False) -> None:
    """The eps cursor over computed values, and the explicit 'add this eps' action (none while frozen)."""
    sb = st.sidebar
    norm = st.session_state["norm"]
    added = st.session_state["extra_eps"].setdefault(norm, [])
    options = selection.eps_options(norm, added)
    st.session_state["eps"] = nearest_eps(st.session_state["eps"], options)
    sb.select_slider("ε (perturbation budget)", options, key="eps", format_func=lambda e: eps_text(e, norm),
                     disabled=off,
                     help="A cursor over computed results: the grid doubles (0, 1, 2, 4, 8, 16 steps) and every "
                          "value is computed once, so moving the cursor only re-draws. ε is in the images' own "
                          "[0,1] pixel scale.")
    eps = st.session_state["eps"]
    grid = ", ".join(eps_text(e, norm) for e in eps_grid(norm))
    value = f"{eps_text(eps, norm)} = {eps:.4f}" if norm == "linf" and eps else eps_text(eps, norm)
    sb.caption(f"ε = **{value}** · computed grid: {grid}"
               + (f" · added: {', '.join(eps_text(e, norm) for e in sorted(added))}" if added else ""))
    if not off:
        with sb.expander("Add an ε off the grid", expanded=bool(st.session_state.get("eps_form_open"))):
            _add_eps_form(norm, added)


def _add_eps_form(norm: str, added: list[float]) -> None:
    key = f"eps_new_{norm}"
    st.session_state.setdefault(key, 3.0 if norm == "linf" else 0.3)
    label = "k (ε = k/255)" if norm == "linf" else "ε (l2 radius, [0,1] pixel units)"
    st.number_input(label, min_value=0.0, max_value=255.0 if norm == "linf" else 100.0,
                    step=0.5 if norm == "linf" else 0.05, key=key, format="%.4g", on_change=_clear_msg)
    e = selection.eps_from_input(st.session_state[key], norm)
    st.button(f"Add ε = {eps_text(e, norm)}", key="eps_add", on_click=_ask_add, args=(e, norm),
              help="Computes this one ε for every task (and keeps every cached curve on screen).")
    pending = st.session_state.get("eps_confirm")
    if pending is not None:
        st.warning(state.check_new_eps(pending, norm)[1])
        st.button("Compute", key="eps_confirm_yes", on_click=_add, args=(pending, norm), type="primary")
        st.button("Cancel", key="eps_confirm_no", on_click=_cancel_add)
    msg = st.session_state.get("eps_msg")
    if msg:
        (st.error if msg[0] == "error" else st.info)(msg[1])
    if added:
        st.button("Remove the added ε", key="eps_clear", on_click=_clear_added, args=(norm,),
                  help="The grid's results stay; the added values leave the cursor and the curves.")


def _clear_msg() -> None:
    st.session_state.pop("eps_msg", None)
    st.session_state.pop("eps_confirm", None)


def _ask_add(eps: float, norm: str) -> None:
    st.session_state["eps_form_open"] = True
    _clear_msg()
    verdict, text = state.check_new_eps(eps, norm)
    if verdict == "ok":
        _add(eps, norm)
    elif verdict == "confirm":
        st.session_state["eps_confirm"] = eps
    elif verdict == "grid":
        st.session_state["eps"] = nearest_eps(eps, eps_grid(norm))
        st.session_state["eps_msg"] = ("info", text)
    else:
        st.session_state["eps_msg"] = ("error", text)


def _add(eps: float, norm: str) -> None:
    st.session_state.update(selection.with_eps(st.session_state.to_dict(), norm, [eps]))
    st.session_state.pop("eps_confirm", None)
    st.toast(state.computing_text([eps], norm))


def _cancel_add() -> None:
    _clear_msg()
    st.session_state["eps_form_open"] = True


def _clear_added(norm: str) -> None:
    st.session_state.update(selection.without_added(st.session_state.to_dict(), norm))
    st.session_state.pop("eps_msg", None)


# ---------------------------------------------------------------- uploads

def _upload_controls() -> None:
    sb = st.sidebar
    sb.file_uploader(f"Checkpoint (.safetensors, at most {state.MAX_UPLOAD_MB} MB)", type=["safetensors"],
                     key="upload_file", help="Never unpickled: only safetensors files are accepted.")
    sb.text_input("timm architecture of the checkpoint", key="upload_arch", help="e.g. resnet18, convnext_atto")
    st.session_state["upload_ref"] = None
    st.session_state["upload_error"] = None
    up = st.session_state.get("upload_file")
    if up is None:
        return
    try:
        saved: dict[str, str] = st.session_state.setdefault("upload_paths", {})
        if up.file_id not in saved:
            saved[up.file_id] = str(save_checkpoint_upload(up.name, up.getvalue()))
        st.session_state["upload_ref"] = checkpoint_ref(st.session_state["upload_arch"], saved[up.file_id], up.name)
    except (CheckpointUploadError, ValueError) as e:  # a refused file; an unknown timm architecture
        st.session_state["upload_error"] = str(e)
        sb.error(str(e))
