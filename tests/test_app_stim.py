"""The app's Stimulation page with Streamlit's AppTest (in-process, no browser).

A phantom session (tests/stim_phantoms.py): the obama portrait, operated side left,
a smile branch then a lower-lip branch, uploaded with its stimulation log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("av")

import stim_phantoms as sp  # noqa: E402
from conftest import symmetry_home_env  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def stim_home(tmp_path_factory):
    """An empty SYMMETRY_HOME; the environment points at it during the module."""
    home = tmp_path_factory.mktemp("stim-home")
    with symmetry_home_env(home):
        yield home


@pytest.fixture(scope="module")
def session_upload(portraits, landmarker, tmp_path_factory):  # type: ignore[no-untyped-def]
    face = sp.base_face(portraits["obama"], "obama", landmarker)
    phantoms = [sp.phantom(face, "buccal 3", "smile_agonist", "left"), sp.phantom(face, "marginal", "lower_lip", "left")]
    folder = tmp_path_factory.mktemp("stim-upload")
    times = sp.write_session(folder / "session.mp4", face, phantoms)
    log = "branch,time_s\n" + "".join(f"{p.name},{t:.4f}\n" for p, t in zip(phantoms, times))
    return (folder / "session.mp4").read_bytes(), log.encode(), phantoms


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    return at.switch_page("app_pages/stim.py").run()


def test_stim_page_maps_stores_and_lists(stim_home, session_upload):
    from symmetry.store import open_store

    video, log, phantoms = session_upload
    at = _page()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Stimulation mapping"
    assert "Upload the session video" in at.info[0].value
    at.file_uploader(key="stim_video").upload("session.mp4", video, "video/mp4")
    at.file_uploader(key="stim_log").upload("log.csv", log, "text/csv")
    at.run()
    assert "Choose the operated side" in " ".join(i.value for i in at.info)
    next(r for r in at.radio if r.label.startswith("Operated side")).set_value("left").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["Branch"]) == ["buccal 3", "marginal"]  # ranked by smile vector
    assert list(table["Class"]) == ["Smile agonist", "Lower lip (oral competence)"]
    assert list(table["Preserve (oral competence)"]) == ["", "yes"]
    assert table["Smile vector (mm)"].iloc[0] == pytest.approx(phantoms[0].truth["smile_vector"], rel=0.3)
    assert len(at.image) == 2  # one baseline | peak per branch
    assert {"Branch table (CSV)", "Branch table (JSON)"} <= {b.label for b in at.download_button}
    at.text_input(key="stim_patient").set_value("ST1")
    next(b for b in at.button if b.label == "Store the branch table").click().run()
    assert not at.exception
    assert any("Stored 2 branch(es) for ST1" in s.value for s in at.success), [e.value for e in at.error]
    with open_store(home=stim_home) as store:
        rows = store.stimulation("ST1")
    assert set(rows["branch"]) == {"buccal 3", "marginal"} and set(rows["side"]) == {"left"}
    # the stored map is listed below
    assert any(d.value.get("branch") is not None and "marginal" in set(d.value["branch"]) for d in at.dataframe[1:])


def test_stim_page_bad_log_is_a_readable_message(stim_home, session_upload):
    video, _, _ = session_upload
    at = _page()
    next(r for r in at.radio if r.label.startswith("Operated side")).set_value("right")
    at.file_uploader(key="stim_video").upload("session.mp4", video, "video/mp4")
    at.file_uploader(key="stim_log").upload("notes.csv", b"branch,time_s\nb1,soon\n", "text/csv")
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors == ["Could not map the branches: notes.csv: line 2: time_s 'soon' is not a number of seconds"]
