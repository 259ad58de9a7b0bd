"""The 20-minute guided lesson: five steps, each a view (a page and its selection, as URL parameters), what to
do there and questions for the students. A banner on top of every page follows the step; its Back and Next
links open the other steps' views. Warm the cache for it with the command in :data:`WARM_UP`."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from . import nav, state
from .view import encode

ROBUST, STANDARD = "fmnist-cnn-pgd-linf-0.1", "fmnist-cnn-standard"
WARM_UP = 'for f in assets/classroom.toml assets/lesson/*.toml; do .venv/bin/python -m rtcore evaluate --spec "$f"; done'
#: measured: 363 s on an empty cache, 2 CPU cores shared with other work (186 s of it is assets/classroom.toml)
WARM_UP_TIME = "about 6 min on 2 CPU cores, on an empty cache"


@dataclass(frozen=True)
class Step:
    """One step: the page (its URL path), the selection it sets, minutes, what to do and the questions."""

    title: str
    page: str
    minutes: int
    do: str
    questions: tuple[str, ...]
    view: tuple[tuple[str, object], ...] = ()


STEPS: tuple[Step, ...] = (
    Step("Two dimensions, exactly", "classroom", 5,
         "Press the four example buttons under the picture, one after the other, and read the verdict below it.",
         ("In *loose*, ρ ≤ Δ and yet no point of the ball is misclassified: why is the criterion not an "
          "equivalence?",
          "What changes between *loose* and *worst direction*: the representation, or the head?",
          "Why does the contracting A certify a point that the same head did not certify before?")),
    Step("A robust backbone at ε = 4/255", "bound", 5,
         "Read the bars per task, then move the ε cursor in the sidebar to 8/255 and back.",
         ("On which task does the bound come closest to the robust accuracy, and on which is it far below?",
          "The hatched bar (bound) is never taller than the solid one (robust accuracy): why must it be so?",
          "What happens to both when ε doubles?"),
         (("backbone", ROBUST), ("eps", 4 / 255), ("probe", "logistic"))),
    Step("Robust vs standard pretraining", "compare", 4,
         "Compare the two backbones' bars, then the curves against ε.",
         ("Does adversarial pretraining upstream make the downstream probe robust?",
          "Does the bound tell the two backbones apart where the attack does?",
          "Where do the 95 % intervals overlap, so that n test points cannot decide?"),
         (("compare_backbones", [ROBUST, STANDARD]), ("compare_active", True), ("eps", 4 / 255))),
    Step("What a Δ-aware head buys", "tradeoff", 3,
         "Compare the three heads in the three panels and read the sentence under the table.",
         ("How much bound does the robust head buy, and how much clean accuracy does it cost?",
          "Is the change larger than the intervals?"),
         (("backbone", ROBUST), ("eps", 4 / 255))),
    Step("Your own data", "bound", 3,
         "In the sidebar open *Add a task from your own data*: type a folder with train/<class>/ and "
         "test/<class>/ images, or upload a .zip of that layout.",
         ("Is your task as robust as the built-in ones on this backbone?",
          "Does the bound predict its robustness as well as for the built-in tasks?"),
         (("backbone", ROBUST), ("eps", 4 / 255))),
)


def step_params(k: int) -> dict[str, str]:
    """The URL parameters of step ``k``: the session defaults with the step's own values, and ``lesson=k``."""
    return encode({**state.session_defaults(), **dict(STEPS[k].view), "lesson": k + 1})


def step_link(k: int, label: str, icon: str | None = None) -> None:
    path = next(p.path for p in nav.PAGES if p.url_path == STEPS[k].page)
    st.page_link(path, label=label, query_params=step_params(k), icon=icon)


def current() -> int | None:
    """The lesson's step (0-based) while one is followed (``lesson=k`` in the URL), else None."""
    k = st.session_state.get("lesson")
    return k - 1 if isinstance(k, int) and 1 <= k <= len(STEPS) else None


def _end() -> None:
    st.session_state["lesson"] = None


def banner(page: str) -> None:
    """On top of the page: the step, what to do, the questions, and links to the previous and next step."""
    k = current()
    if k is None:
        return
    step = STEPS[k]
    with st.container(border=True, key="lesson_banner"):
        st.markdown(f"**Lesson, step {k + 1} of {len(STEPS)}: {step.title}** · about {step.minutes} min  \n"
                    f"{step.do}")
        st.markdown("**Questions for the class**\n" + "\n".join(f"{i}. {q}" for i, q in
                                                              enumerate(step.questions, 1)))
        cols = st.columns([1, 3, 2, 2], vertical_alignment="center")
        with cols[0]:
            if k > 0:
                step_link(k - 1, "Back", ":material/arrow_back:")
        with cols[1]:
            if k + 1 < len(STEPS):
                step_link(k + 1, f"Next: {STEPS[k + 1].title}", ":material/arrow_forward:")
        with cols[2]:
            if page != step.page:
                step_link(k, "Open this step's page", ":material/open_in_new:")
        cols[3].button("End the lesson", key="lesson_end", on_click=_end, icon=":material/close:")
