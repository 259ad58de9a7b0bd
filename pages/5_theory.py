"""Theory / classroom: the two results in words and formulas, and an exact 2-D picture to drag through."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import state, toy, ui

st.title("Theory: why a robust representation gives a robust linear probe")
st.markdown(
    "Nern et al. (NeurIPS 2023) split robustness of a downstream model h∘g into a property of the backbone g "
    "alone, the **representation vulnerability** Δ, and a property of the linear head h, its **margins**."
)
st.latex(r"\Delta_g(x;\varepsilon)\;=\;\sup_{x'\in B_p(x,\varepsilon)\cap[0,1]^d}\;\lVert g(x')-g(x)\rVert_2")

left, right = st.columns(2)
with left:
    st.subheader("(i) A loss bound independent of the task")
    st.markdown("Cross-entropy is convex in the features, so for every x′ in the ball")
    st.latex(r"\ell(h(g(x')),y)-\ell(h(g(x)),y)\;\le\;\max_k\lVert w_k-w_y\rVert_2\;\Delta_g(x;\varepsilon)")
    st.markdown("In words: *the adversarial loss exceeds the clean loss by at most the spread of the head's weight "
                "vectors times Δ.* A backbone with small Δ limits the damage for **every** linear head trained on it.")
with right:
    st.subheader("(ii) A criterion for robust classification")
    st.markdown("For the head h(z) = W z + b and a test point (x, y), the distance of g(x) to the boundary between "
                "class y and class k in feature space is")
    st.latex(r"\rho(x)=\min_{k\neq y}\frac{(w_y-w_k)^\top g(x)+b_y-b_k}{\lVert w_y-w_k\rVert_2}")
    st.markdown("If the features cannot move farther than the margin, the prediction cannot change:")
    st.latex(r"\rho(x)>\Delta_g(x;\varepsilon)\;\Longrightarrow\;"
             r"\arg\max_k h(g(x'))_k=y\quad\forall x'\in B_p(x,\varepsilon)")
    st.markdown("In words: *a point is safe if its margin in feature space is larger than the largest shift an "
                "attacker can cause there.* Averaging this indicator over the test set gives the bound on robust "
                "accuracy that the dashboard compares with an attack.")
st.info("**Prediction vs certificate.** With Δ found by an attack (a lower estimate), the bound is a prediction; "
        "only an upper bound on Δ (e.g. interval bound propagation) would make it a certified guarantee.")

st.header("Drag through it: a linear representation in two dimensions")
st.markdown(
    "Here g(x) = A x with a 2×2 matrix A, so Δ is exact: **l2**: Δ = ε·σ_max(A); **linf**: Δ = ε·max over sign "
    "vectors s of ‖A s‖₂. The head separates two classes with w·z + b = 0 (unit normal w at angle θ); x belongs to "
    "the side w·g(x) + b > 0. The exact end-to-end answer for a linear model is: robust iff "
    "w·A x + b > ε‖Aᵀw‖_q (q = 1 for linf, 2 for l2). Clipping to [0, 1] is ignored in this picture."
)
ui.toy_examples()
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
toy = toy.linear_toy(s.toy_a11, s.toy_a12, s.toy_a21, s.toy_a22, s.toy_x1, s.toy_x2, s.toy_eps, s.toy_norm,
                    s.toy_angle, s.toy_offset)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Δ (exact)", f"{toy.delta:.3f}")
m2.metric("margin ρ", f"{toy.rho:.3f}")
m3.metric("criterion ρ > Δ", "certified" if toy.certified else "not certified")
m4.metric("exact end-to-end", "robust" if toy.robust else ("broken" if toy.correct else "misclassified"),
          help=f"robust iff w·Ax + b = {toy.rho:.3f} > ε‖Aᵀw‖ in the dual norm = {toy.required:.3f}")
ui.chart(fx.linear_toy_figure(toy), key="toy_figure")
st.markdown(ui.toy_verdict(toy))
