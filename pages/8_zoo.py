"""Backbone zoo: a sweep's calibration across backbones, coloured by pretraining protocol.

It reads a sweep folder with :func:`rtcore.runs.zoo.load_sweep` (a tidy frame with a ``protocol`` column); the
settings, means and rank agreement come from :mod:`rtcore.runs.zoo`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import figures as fx
from app import ui
from app.state import private
from app.texts import text
from app.view import chart
from rtcore.config import eps_text
from rtcore.runs.zoo import backbone_means, list_sweeps, load_sweep, rank_agreement, select_rows, sweep_settings, \
    sweep_stamp

SWEEP = "assets/zoo.toml"
MEANS = {"clean_acc": "clean", "robust_acc": "robust (attack)", "gap": "robust − bound"}


@st.cache_data(show_spinner=False, max_entries=8)
def _load(path: str, stamp: float) -> pd.DataFrame:
    return load_sweep(path)


def choose_folder() -> Path | None:
    """The sweep folder: one found under the cache's ``sweeps/`` or a typed path."""
    found = list_sweeps()
    c1, c2 = st.columns([1, 2])
    names = [p.name for p in found]
    picked = c1.selectbox("Sweep (under the cache's sweeps/)", names, index=0 if names else None,
                          key="zoo_sweep", placeholder="none found")
    typed = c2.text_input("…or a sweep folder (the --out of `python -m rtcore sweep`)", key="zoo_path").strip()
    if typed:
        return Path(typed).expanduser()
    return found[names.index(picked)] if picked is not None else None


st.title("Backbone zoo: does the bound predict robustness across backbones?")
st.markdown(text("zoo_intro"))
folder = choose_folder()
if folder is None:
    st.info(f"**No sweep found yet.** {text('zoo_how_to', sweep=SWEEP)}")
    st.stop()
try:
    df = _load(str(folder), sweep_stamp(folder))
except ValueError as e:
    st.warning(f"{e}. {text('zoo_how_to', sweep=SWEEP)}")
    st.stop()
options = sweep_settings(df)
varied = {c: v for c, v in options.items() if len(v) > 1}
choice = {c: v[0] for c, v in options.items()}
for col, (name, values) in zip(st.columns(len(varied)) if varied else [], varied.items()):
    choice[name] = col.selectbox(name, values, key=f"zoo_{name}")
tasks_all = list(dict.fromkeys(df["task"]))
tasks = st.multiselect("Tasks", tasks_all, default=tasks_all, key="zoo_tasks")
shown = select_rows(df, choice, tasks)
backbones = list(dict.fromkeys(shown["backbone"]))
st.caption(f"{private(str(folder))} · {ui.plural(len(backbones), 'backbone')} × {ui.plural(len(tasks), 'task')} × "
           f"{shown['eps'].nunique()} ε · "
           + ", ".join(f"{k} {v}" for k, v in choice.items()))
if shown.empty:
    st.info("No rows for this choice: pick at least one task.")
    st.stop()
with st.container(key="zoo_calibration"):  # the browser test waits for .st-key-zoo_calibration
    chart("zoo_calibration_chart", fx.calibration_figure, shown)
st.subheader("Per backbone")
st.dataframe(backbone_means(shown).rename(columns=MEANS), hide_index=True, key="zoo_backbones",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("clean", "robust (attack)",
                                                                                     "bound", "robust − bound")})
agree = rank_agreement(shown)
if not agree.empty:
    norm = str(shown["norm"].iloc[0]) if "norm" in shown.columns else "linf"
    known = agree["spearman"].dropna()
    st.caption(text("zoo_agreement", median=f"median {known.median():.2f} over {len(known)} (task, ε)"
                    if len(known) else "undefined so far"))
    st.dataframe(agree.assign(eps=[eps_text(e, norm) for e in agree["eps"]]).rename(columns={"eps": "ε"}),
                 hide_index=True, key="zoo_agreement",
                 column_config={"spearman": st.column_config.NumberColumn(format="%.2f")})
picked = st.multiselect("Curves across ε for the backbones", backbones, default=[], key="zoo_curves",
                        placeholder="choose backbones to draw their curves")
if picked:
    chart("zoo_curves_chart", fx.compare_curves, shown[shown["backbone"].isin(picked)])
