"""The app in a real browser: `streamlit run app.py` driven through Debian's headless Chromium.

Playwright drives the system's ``/usr/bin/chromium`` (Debian package ``chromium``); no
browser is downloaded. The test uploads the sample portrait on the Measure page, waits
for its measures, checks that the browser fetched nothing from any other host, and saves
a screenshot to ``tests/artifacts/`` for people to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STARTUP_TIMEOUT_S = 60
MEASURE_TIMEOUT_MS = 180_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A `streamlit run app.py` server on a free localhost port, with an empty temporary SYMMETRY_HOME."""
    pytest.importorskip("streamlit")
    home = tmp_path_factory.mktemp("symmetry-e2e-home")
    port = _free_port()
    env = {**os.environ, "SYMMETRY_HOME": str(home)}
    env.pop("SYMMETRY_DATABASE_URL", None)
    log = open(home / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}: {(home / 'streamlit.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _idle(page, timeout_s: float = 180.0) -> None:
    """Wait until the app's script has finished (the running indicator is gone)."""
    deadline = time.monotonic() + timeout_s
    time.sleep(0.5)
    while page.locator("[data-testid=stStatusWidget]").count() and time.monotonic() < deadline:
        time.sleep(0.25)


def test_upload_a_photo_and_see_its_measures(app_url, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(urlparse(request.url).hostname or request.url.split(":", 1)[0]))
    page.goto(app_url)
    page.get_by_role("heading", name="Measure photos and videos").wait_for(timeout=60_000)
    _idle(page)

    page.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(str(ROOT / "sample_media" / "obama.jpg"))
    metric = page.locator("[data-testid=stMetric]").filter(has_text="Eye opening")
    metric.wait_for(timeout=MEASURE_TIMEOUT_MS)
    _idle(page)

    value = metric.locator("[data-testid=stMetricValue]").inner_text()
    assert value.endswith(" mm") and float(value.split()[0]) >= 0.0
    for label in ("Mouth corner height", "Brow height"):
        assert page.locator("[data-testid=stMetric]").filter(has_text=label).count() == 1
    assert page.get_by_text("mm per pixel").count() >= 1
    # the per-side table (a canvas grid; its cells are also in the DOM for screen readers)
    table = page.locator("[data-testid=stDataFrame]").first
    table.wait_for(timeout=60_000)
    table.get_by_text("Eye opening (palpebral fissure)", exact=True).wait_for(state="attached", timeout=30_000)
    assert table.get_by_text("Mouth corner excursion (lower-lip centre → corner)", exact=True).count() == 1
    assert page.locator("[data-testid=stImage] img").count() >= 2  # thumbnail and annotated overlay
    assert page.locator("[data-testid=stException]").count() == 0

    page.screenshot(path=str(ARTIFACTS / "measure_obama.png"), full_page=True)
    # nothing was fetched from anywhere but the app's own server
    assert hosts <= {"127.0.0.1", "data", "blob"}, hosts
