"""The guided lesson: a 20-minute plan through the dashboard, each step a link to its view (app/lesson.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import lesson, nav
from app.texts import text

st.title("A 20-minute lesson: does a robust backbone make a robust linear probe?")
st.markdown(
    "Five steps, each opening a page with its settings (the link also sets the sidebar). A banner on top of the "
    "page says what to do and asks the class questions; **Next** opens the following step. Share a step with "
    "the class through *Share this view* in the sidebar (a link and a QR code), and *Freeze* it while you talk.")
plan = pd.DataFrame([{"step": i, "minutes": s.minutes, "what": s.title, "page": nav.title(s.page), "students do": s.do}
                     for i, s in enumerate(lesson.STEPS, 1)])
st.table(plan.set_index("step"))
st.markdown(f"**The one sentence to remember.** {text('why_below')}")
lesson.step_link(0, f"Start: {lesson.STEPS[0].title}", ":material/play_arrow:")
st.subheader("Before the class: warm the cache")
st.code(lesson.WARM_UP, language="bash", wrap_lines=True)
st.caption(f"Computes every result the lesson opens ({lesson.WARM_UP_TIME}); then every student's page is read "
           "from the cache. Your own data (step 5) is computed when a student adds it.")
