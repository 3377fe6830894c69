"""The app's Plotly figures (no Streamlit runtime needed)."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("plotly")

from app_pages._charts import timeline_figure  # noqa: E402


def test_timeline_labels_of_neighbouring_visits_sit_on_opposite_sides() -> None:
    # visits 4 weeks apart across phases, given out of time order
    visits = pd.DataFrame({
        "days_from_procedure": [70, -10, 42, 365, 14],
        "phase": ["settling", "pre-op", "settling", "late", "early"],
        "visit_date": ["2026-03-22", "2026-01-01", "2026-02-22", "2027-01-10", "2026-01-25"],
        "n_recordings": [6, 5, 6, 4, 6],
    })
    fig = timeline_figure(visits)
    placed = sorted(
        (float(x), pos, text)
        for trace in fig.data
        for x, pos, text in zip(trace.x, trace.textposition, trace.text)
    )
    assert [x for x, _, _ in placed] == [-10.0, 14.0, 42.0, 70.0, 365.0]
    assert [pos for _, pos, _ in placed] == ["top center", "bottom center"] * 2 + ["top center"]
    assert placed[0][2] == "2026-01-01<br>5 photo(s)"
    low, high = fig.layout.yaxis.range
    assert low <= -1.0 and high >= 1.0  # room for the labels below as well as above
