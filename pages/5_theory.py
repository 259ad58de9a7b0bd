"""Theory / classroom: the two results in words and formulas, and an exact 2-D picture to drag through."""

from __future__ import annotations

import streamlit as st

from app import figures as fx
from app import view
from app.state import NORM_LABELS
from app.texts import texts
from rtcore.config import NORMS
from rtcore.theory import LinearToy, linear_toy

#: slider values of the picture that show what their label says (assets/text/theory.toml)
EXAMPLES = texts("theory")["examples"]


def _apply_example(index: int) -> None:
    st.session_state.update({f"toy_{k}": v for k, v in EXAMPLES[index]["values"].items()})
    st.session_state["toy_example"] = index


def verdict(toy: LinearToy) -> str:
    """One sentence that explains the current picture ("certified" only here: Δ is exact)."""
    dual = "ε‖Aᵀw‖₁" if toy.norm == "linf" else "ε‖Aᵀw‖₂"
    if not toy.correct:
        return "g(x) lies on the wrong side of the boundary (ρ ≤ 0): the point is misclassified even without attack."
    if toy.certified:
        return (f"ρ = {toy.rho:.3f} > Δ = {toy.delta:.3f}: the dashed circle stays on the correct side, so no point "
                "of the ε-ball can be misclassified. Δ is exact here, so x is **certified** (and the exact answer "
                "agrees).")
    if toy.robust:
        return (f"ρ = {toy.rho:.3f} ≤ Δ = {toy.delta:.3f}, yet the exact answer is *robust*: the image of the ball "
                f"(shaded) does not reach the boundary because its farthest direction is not the boundary's normal "
                f"(needed: ρ > {dual} = {toy.required:.3f}). The criterion is conservative here: a bound, not an "
                "equivalence.")
    return (f"ρ = {toy.rho:.3f} ≤ {dual} = {toy.required:.3f}: part of the shaded image crosses the boundary, "
            "so an attacker can flip the prediction; the criterion rightly does not certify x.")


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
for k, v in EXAMPLES[0]["values"].items():
    st.session_state.setdefault(f"toy_{k}", v)
for i, (col, ex) in enumerate(zip(st.columns(len(EXAMPLES)), EXAMPLES, strict=True)):
    col.button(ex["label"], key=f"toy_example_{i}", on_click=_apply_example, args=(i,), width="stretch")
if st.session_state.get("toy_example") is not None:
    ex = EXAMPLES[st.session_state["toy_example"]]
    st.caption(f"**{ex['label']}**: {ex['lesson']} (Move any slider to explore from here.)")

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
    st.radio("norm", NORMS, key="toy_norm", horizontal=True, format_func=NORM_LABELS.get)
with c3:
    st.markdown("**Linear head**")
    st.slider("boundary normal angle θ (degrees)", -180, 180, step=5, key="toy_angle_deg")
    st.slider("offset b", -3.0, 3.0, step=0.05, key="toy_offset")
tm = linear_toy(**{k: st.session_state[f"toy_{k}"] for k in EXAMPLES[0]["values"]})

m1, m2, m3, m4 = st.columns(4)
m1.metric("Δ (exact)", f"{tm.delta:.3f}")
m2.metric("margin ρ", f"{tm.rho:.3f}")
m3.metric("criterion ρ > Δ", "certified" if tm.certified else "not certified",
          help="Δ is exact in this linear model, so ρ > Δ is a certificate here (unlike an attack estimate).")
m4.metric("exact end-to-end", "robust" if tm.robust else ("broken" if tm.correct else "misclassified"),
          help=f"robust iff w·Ax + b = {tm.rho:.3f} > ε‖Aᵀw‖ in the dual norm = {tm.required:.3f}")
view.chart("toy_figure", fx.linear_toy_figure, tm)
st.markdown(verdict(tm))
