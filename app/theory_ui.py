"""The theory page's Streamlit helpers: example buttons that set the toy's sliders, and the sliders."""

from __future__ import annotations

import streamlit as st

from app import state, toy


def _apply_example(index: int) -> None:
    st.session_state.update(toy.TOY_EXAMPLES[index].values)
    st.session_state["toy_example"] = index


def toy_examples() -> None:
    """One button per example (each sets every slider); the lesson of the last one chosen below them."""
    for k, v in toy.TOY_EXAMPLES[0].values.items():
        st.session_state.setdefault(k, v)
    cols = st.columns(len(toy.TOY_EXAMPLES))
    for i, (col, ex) in enumerate(zip(cols, toy.TOY_EXAMPLES, strict=True)):
        col.button(ex.label, key=f"toy_example_{i}", on_click=_apply_example, args=(i,), width="stretch")
    chosen = st.session_state.get("toy_example")
    if chosen is not None:
        ex = toy.TOY_EXAMPLES[chosen]
        st.caption(f"**{ex.label}**: {ex.lesson} (Move any slider to explore from here.)")


def toy_sliders() -> toy.LinearToy:
    """The sliders of the 2-D model, and the model they describe."""
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Representation A**")
        a, b = st.columns(2)
        a.slider("a₁₁", -2.0, 2.0, step=0.1, key="toy_a11")
        b.slider("a₁₂", -2.0, 2.0, step=0.1, key="toy_a12")
        a.slider("a₂₁", -2.0, 2.0, step=0.1, key="toy_a21")
        b.slider("a₂₂", -2.0, 2.0, step=0.1, key="toy_a22")
    with c2:
        st.markdown("**Input point and threat model**")
        a, b = st.columns(2)
        a.slider("x₁", 0.0, 1.0, step=0.05, key="toy_x1")
        b.slider("x₂", 0.0, 1.0, step=0.05, key="toy_x2")
        st.slider("ε", 0.0, 1.0, step=0.01, key="toy_eps")
        st.radio("norm", state.NORMS, key="toy_norm", horizontal=True, format_func=state.NORM_LABELS.get)
    with c3:
        st.markdown("**Linear head**")
        st.slider("boundary normal angle θ (degrees)", -180, 180, step=5, key="toy_angle")
        st.slider("offset b", -3.0, 3.0, step=0.05, key="toy_offset")
    s = st.session_state
    return toy.linear_toy(s.toy_a11, s.toy_a12, s.toy_a21, s.toy_a22, s.toy_x1, s.toy_x2, s.toy_eps, s.toy_norm,
                          s.toy_angle, s.toy_offset)


def toy_metrics(tm: toy.LinearToy) -> None:
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Δ (exact)", f"{tm.delta:.3f}")
    m2.metric("margin ρ", f"{tm.rho:.3f}")
    m3.metric("criterion ρ > Δ", "certified" if tm.certified else "not certified",
              help="Δ is exact in this linear model, so ρ > Δ is a certificate here (unlike an attack estimate).")
    m4.metric("exact end-to-end", "robust" if tm.robust else ("broken" if tm.correct else "misclassified"),
              help=f"robust iff w·Ax + b = {tm.rho:.3f} > ε‖Aᵀw‖ in the dual norm = {tm.required:.3f}")
