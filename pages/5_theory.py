"""Theory / classroom: the two results in words and formulas, and an exact 2-D picture to drag through."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import theory_ui, view

st.title("Theory: why a robust representation gives a robust linear probe")
st.markdown(
    "Nern et al. (NeurIPS 2023) split robustness of a downstream model h∘g into a property of the backbone g "
    "alone, the **representation vulnerability** Δ, and a property of the linear head h, its **margins**."
)
st.latex(r"\Delta_g(x;\varepsilon)\;=\;\sup_{x'\in B_p(x,\varepsilon)\cap[0,1]^d}\;\lVert g(x')-g(x)\rVert_2")

# one result under the other, each formula at full width (in two columns formula (ii) was cut at 1280 px)
st.subheader("(i) A loss bound independent of the task")
st.markdown("Cross-entropy is convex in the features, so for every x′ in the ball")
st.latex(r"\ell(h(g(x')),y)-\ell(h(g(x)),y)\;\le\;\max_k\lVert w_k-w_y\rVert_2\;\Delta_g(x;\varepsilon)")
st.markdown("In words: *the adversarial loss exceeds the clean loss by at most the spread of the head's weight "
            "vectors times Δ.* A backbone with small Δ limits the damage for **every** linear head trained on it.")
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
st.info("**Criterion met vs certified.** With Δ found by an attack (a lower estimate), ρ > Δ is a *prediction*: the "
        "other pages say the criterion is **met**. Only an upper bound on Δ makes it a guarantee; in the linear "
        "picture below Δ is exact, so there (and only there) a point is **certified**.")

st.header("Drag through it: a linear representation in two dimensions")
st.markdown(
    "Here g(x) = A x with a 2×2 matrix A, so Δ is exact: **l2**: Δ = ε·σ_max(A); **linf**: Δ = ε·max over sign "
    "vectors s of ‖A s‖₂. The head separates two classes with w·z + b = 0 (unit normal w at angle θ); x belongs to "
    "the side w·g(x) + b > 0. The exact end-to-end answer for a linear model is: robust iff "
    "w·A x + b > ε‖Aᵀw‖_q (q = 1 for linf, 2 for l2). Clipping to [0, 1] is ignored in this picture. "
    "Each button below sets every slider to an example that shows what its label says."
)
theory_ui.toy_examples()
tm = theory_ui.toy_sliders()
theory_ui.toy_metrics(tm)
view.chart("toy_figure", fx.linear_toy_figure, tm)
st.markdown(theory_ui.verdict(tm))
