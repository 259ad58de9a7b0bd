"""The theory page's controls: examples that set the sliders of the exact 2-D picture (:mod:`rtcore.theory`),
the sliders, the metrics and the sentence that explains the picture."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from rtcore.config import NORMS
from rtcore.theory import LinearToy, linear_toy

from .state import NORM_LABELS


@dataclass(frozen=True)
class ToyExample:
    """Slider values that show what ``label`` says; ``certified`` / ``robust``: the verdicts it must show
    (checked by tests/app/test_app.py)."""

    label: str
    values: dict[str, float | str]
    certified: bool
    robust: bool
    lesson: str


def _values(a: tuple[float, float, float, float], x: tuple[float, float], eps: float, norm: str, angle: float,
            offset: float) -> dict[str, float | str]:
    return {"toy_a11": a[0], "toy_a12": a[1], "toy_a21": a[2], "toy_a22": a[3], "toy_x1": x[0], "toy_x2": x[1],
            "toy_eps": eps, "toy_norm": norm, "toy_angle": angle, "toy_offset": offset}


TOY_EXAMPLES: tuple[ToyExample, ...] = (
    ToyExample("loose: safe, not certified", _values((1.5, 0.5, 0.3, 0.8), (0.6, 0.4), 0.2, "linf", -30, -0.4),
               certified=False, robust=True,
               lesson="the criterion is loose: ρ ≤ Δ, yet no point of the ball crosses, because Δ's direction is not "
                      "the boundary's normal."),
    ToyExample("worst direction: broken", _values((1.5, 0.5, 0.3, 0.8), (0.6, 0.4), 0.2, "linf", 30, -0.9),
               certified=False, robust=False,
               lesson="the worst direction hits the boundary: the largest shift points across it, so an attacker "
                      "flips the prediction."),
    ToyExample("isotropic A = I (l2): exact", _values((1.0, 0.0, 0.0, 1.0), (0.5, 0.5), 0.2, "l2", 45, -0.5),
               certified=True, robust=True,
               lesson="an isotropic representation: Δ = ε in every direction, so ρ > Δ is exactly the end-to-end "
                      "condition (criterion and exact answer agree)."),
    ToyExample("contracting g: certified", _values((0.4, 0.1, -0.1, 0.3), (0.6, 0.4), 0.2, "linf", 30, -0.05),
               certified=True, robust=True,
               lesson="a contracting (robust) representation: the same ε-ball maps to a small image (Δ ≈ 0.11 "
                      "instead of 0.46 above), so the margin clears it."),
)


def example_toy(example: ToyExample) -> LinearToy:
    """The picture an example's slider values describe."""
    v = example.values
    return linear_toy(*(float(v[k]) for k in ("toy_a11", "toy_a12", "toy_a21", "toy_a22", "toy_x1", "toy_x2",
                                              "toy_eps")), str(v["toy_norm"]), float(v["toy_angle"]),
                      float(v["toy_offset"]))


def _apply_example(index: int) -> None:
    st.session_state.update(TOY_EXAMPLES[index].values)
    st.session_state["toy_example"] = index


def toy_examples() -> None:
    """One button per example (each sets every slider); the lesson of the last one chosen below them."""
    for k, v in TOY_EXAMPLES[0].values.items():
        st.session_state.setdefault(k, v)
    cols = st.columns(len(TOY_EXAMPLES))
    for i, (col, ex) in enumerate(zip(cols, TOY_EXAMPLES, strict=True)):
        col.button(ex.label, key=f"toy_example_{i}", on_click=_apply_example, args=(i,), width="stretch")
    chosen = st.session_state.get("toy_example")
    if chosen is not None:
        ex = TOY_EXAMPLES[chosen]
        st.caption(f"**{ex.label}**: {ex.lesson} (Move any slider to explore from here.)")


def toy_sliders() -> LinearToy:
    """The sliders of the 2-D model, and the picture they describe."""
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
        st.slider("boundary normal angle θ (degrees)", -180, 180, step=5, key="toy_angle")
        st.slider("offset b", -3.0, 3.0, step=0.05, key="toy_offset")
    s = st.session_state
    return linear_toy(s.toy_a11, s.toy_a12, s.toy_a21, s.toy_a22, s.toy_x1, s.toy_x2, s.toy_eps, s.toy_norm,
                      s.toy_angle, s.toy_offset)


def toy_metrics(tm: LinearToy) -> None:
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Δ (exact)", f"{tm.delta:.3f}")
    m2.metric("margin ρ", f"{tm.rho:.3f}")
    m3.metric("criterion ρ > Δ", "certified" if tm.certified else "not certified",
              help="Δ is exact in this linear model, so ρ > Δ is a certificate here (unlike an attack estimate).")
    m4.metric("exact end-to-end", "robust" if tm.robust else ("broken" if tm.correct else "misclassified"),
              help=f"robust iff w·Ax + b = {tm.rho:.3f} > ε‖Aᵀw‖ in the dual norm = {tm.required:.3f}")


def verdict(toy: LinearToy) -> str:
    """One sentence that explains the current picture ("certified" only here: Δ is exact)."""
    dual = "ε‖Aᵀw‖₁" if toy.norm == "linf" else "ε‖Aᵀw‖₂"
    if not toy.correct:
        return "g(x) lies on the wrong side of the boundary (ρ ≤ 0): the point is misclassified even without attack."
    if toy.certified:
        return (f"ρ = {toy.rho:.3f} > Δ = {toy.delta:.3f}: the dashed circle stays on the correct side, so no point of "
                "the ε-ball can be misclassified. Δ is exact here, so x is **certified** (and the exact answer agrees).")
    if toy.robust:
        return (f"ρ = {toy.rho:.3f} ≤ Δ = {toy.delta:.3f}, yet the exact answer is *robust*: the image of the ball "
                f"(shaded) does not reach the boundary because its farthest direction is not the boundary's normal "
                f"(needed: ρ > {dual} = {toy.required:.3f}). The criterion is conservative here: a bound, not an "
                "equivalence.")
    return (f"ρ = {toy.rho:.3f} ≤ {dual} = {toy.required:.3f}: part of the shaded image crosses the boundary, "
            "so an attacker can flip the prediction; the criterion rightly does not certify x.")
