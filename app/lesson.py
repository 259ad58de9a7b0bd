"""The 20-minute guided lesson: five steps (``assets/text/lesson.toml``), each a view (a page and its selection, as
URL parameters), what to do there and questions for the students. A banner on top of every page follows the step;
its Back and Next links open the other steps' views. Warm the cache for it with the command of :data:`WARM_UP`."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from rtcore.runs import selection

from . import nav, state
from .texts import texts


@dataclass(frozen=True)
class Step:
    """One step: the page (its URL path), minutes, what to do, the questions and the URL parameters it sets."""

    title: str
    page: str
    minutes: int
    do: str
    questions: tuple[str, ...]
    view: dict[str, str]


STEPS: tuple[Step, ...] = tuple(Step(**{**s, "questions": tuple(s["questions"])}) for s in texts("lesson")["steps"])
WARM_UP: str = texts("lesson")["warm_up"]
WARM_UP_TIME: str = texts("lesson")["warm_up_time"]


def step_params(k: int) -> dict[str, str]:
    """The URL parameters of step ``k``: the session defaults with the step's own values, and ``lesson=k``."""
    return {**selection.to_query(state.session_defaults()), **STEPS[k].view, "lesson": str(k + 1)}


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
        links = [(k - 1, "Back", ":material/arrow_back:", 1)] if k > 0 else []  # (step, label, icon, width)
        if k + 1 < len(STEPS):
            links.append((k + 1, f"Next: {STEPS[k + 1].title}", ":material/arrow_forward:", 3))
        if page != step.page:
            links.append((k, "Open this step's page", ":material/open_in_new:", 2))
        cols = st.columns([w for *_, w in links] + [2], vertical_alignment="center")  # side by side from the left
        for col, (j, label, icon, _) in zip(cols, links):
            with col:
                step_link(j, label, icon)
        cols[-1].button("End the lesson", key="lesson_end", on_click=_end, icon=":material/close:")
