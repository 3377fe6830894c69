"""symmetry's web app: measure photos and videos, follow a patient, compare cohorts.

Run it with ``make demo`` (the bundled demo patient and cohort in a local
database) or on your own data::

    SYMMETRY_HOME=/path/to/data streamlit run app.py

This file is the router and the shared frame (``st.navigation`` with the pages
in ``app_pages/``); the pages are layout and call the ``symmetry`` library.
Everything runs on this machine: the face model is bundled, the configuration
in ``.streamlit/config.toml`` serves on localhost only, sends no usage
statistics and asks the browser to load nothing from elsewhere.

Data
----
The database is the CLI's: ``SYMMETRY_DATABASE_URL`` (any SQLAlchemy URL, e.g.
a clinic's PostgreSQL server) or, by default, SQLite in ``SYMMETRY_HOME``
(stored photo copies in ``SYMMETRY_HOME/media``). Uploads are limited to
``server.maxUploadSize`` MB per file (``.streamlit/config.toml``).

Password protection (off by default)
------------------------------------
To ask for a password before anything is shown, put it in Streamlit's secrets
file ``.streamlit/secrets.toml`` next to this file (or ``~/.streamlit/secrets.toml``;
keep it out of version control)::

    [symmetry]
    password = "a long passphrase"

Every new browser session must then enter it once. Without that entry the app
is open to whoever can reach it, which by default is only this machine
(``server.address = "localhost"``). This is a shared-secret gate for a small
clinic, not user management: put the app behind the clinic's sign-on for more.
"""

from __future__ import annotations

import hmac

import streamlit as st



def _icon() -> object:
    """The tab icon, drawn here (a named or emoji icon would be fetched from the web): a face's
    two halves in the overlay's side colours (orange: patient's right, cyan: patient's left)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.pieslice((4, 4, 60, 60), 90, 270, fill=(255, 140, 0, 255))
    draw.pieslice((4, 4, 60, 60), 270, 90, fill=(0, 168, 232, 255))
    draw.line((32, 2, 32, 62), fill=(40, 40, 40, 255), width=3)
    return img


st.set_page_config(page_title="symmetry", page_icon=_icon(), layout="wide")


def _configured_password() -> str | None:
    """The password from ``st.secrets["symmetry"]["password"]``, or None when none is set."""
    try:
        section = st.secrets.get("symmetry")
    except Exception:  # noqa: BLE001 - no secrets file at all: protection is off
        return None
    if not section:
        return None
    value = section.get("password") if hasattr(section, "get") else None
    return str(value) if value else None


def _password_gate() -> bool:
    """True when no password is configured or this session entered it."""
    expected = _configured_password()
    if expected is None or st.session_state.get("_symmetry_authenticated"):
        return True
    st.title("symmetry")
    with st.form("login"):
        entered = st.text_input("Password", type="password")
        ok = st.form_submit_button("Enter")
    if ok:
        if hmac.compare_digest(entered.encode(), expected.encode()):
            st.session_state["_symmetry_authenticated"] = True
            st.rerun()
        st.error("Wrong password.")
    return False


def _sidebar() -> None:
    from app_pages._common import data_changed, display_url

    with st.sidebar:
        st.caption("**Sides are the patient's**: *left* is the patient's left, the right of an unmirrored photo.")
        try:
            where = display_url()
        except Exception as exc:  # noqa: BLE001 - a bad SYMMETRY_DATABASE_URL is reported on the pages
            where = f"(not usable: {exc})"
        st.caption(f"Database: `{where}`")
        if st.button("Reload data", help="Read the database again (e.g. after a `symmetry ingest` on the command line)."):
            data_changed()


if _password_gate():
    pages = [
        st.Page("app_pages/measure.py", title="Measure", icon=":material/photo_camera:", default=True),
        st.Page("app_pages/patient.py", title="Patient", icon=":material/monitoring:"),
        st.Page("app_pages/cohort.py", title="Cohort", icon=":material/bar_chart:"),
        st.Page("app_pages/video.py", title="Video", icon=":material/movie:"),
        st.Page("app_pages/stim.py", title="Stimulation", icon=":material/bolt:"),
    ]
    current = st.navigation(pages)
    _sidebar()
    current.run()
