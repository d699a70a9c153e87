"""The web app in a real browser: headless Chromium uploads a photo, waits, reads the result, downloads.

Skips only where Chromium is missing, and not in CI (`.ci/run` sets EMOCLOAK_REQUIRE_BROWSER=1 and
installs it). Uses a TCCE test photo, or the shipped sample where ../shared/data is absent.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from browser import browser_missing, chromium, running_server, tcce_test_photo
from PIL import Image

import emocloak

pytestmark = pytest.mark.skipif(
    browser_missing() is not None and not os.environ.get("EMOCLOAK_REQUIRE_BROWSER"),
    reason=str(browser_missing()),
)


def _downloaded(folder: Path, timeout: float = 30) -> Path:
    end = time.time() + timeout
    while time.time() < end:
        done = [p for p in folder.iterdir() if not p.name.endswith(".crdownload")]
        if done:
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"nothing downloaded into {folder}")


def test_cloak_read_and_download_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tcce_test_photo() or emocloak.sample_photo_path()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with running_server("--workers", "1") as (url, log):
        assert url.startswith("http://127.0.0.1:")
        assert any("127.0.0.1 only" in line for line in log)
        driver = chromium(downloads)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 120)
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#method option")))
            Select(driver.find_element(By.ID, "method")).select_by_value("universal")
            assert not driver.find_element(By.ID, "strength").is_enabled()  # no strength for universal
            driver.find_element(By.ID, "cloak-files").send_keys(str(photo))
            driver.find_element(By.ID, "cloak-go").click()
            card = wait.until(
                ec.presence_of_element_located(
                    (By.CSS_SELECTOR, '.card[data-status="done"], .card[data-status="failed"]')
                )
            )
            assert card.get_attribute("data-status") == "done", card.text
            wait.until(lambda d: card.find_elements(By.CSS_SELECTOR, ".rec"))
            # every recognizer's reading before and after, as bars over the 8 emotions, with a verdict
            recs = card.find_elements(By.CSS_SELECTOR, ".rec[data-recognizer]")
            assert {r.get_attribute("data-recognizer") for r in recs} == set(emocloak.available_recognizers())
            cnn = card.find_element(By.CSS_SELECTOR, '.rec[data-recognizer="cnn"]')
            assert len(cnn.find_elements(By.CSS_SELECTOR, ".row")) == len(emocloak.LABELS)
            assert "fooled" in cnn.text and "→" in cnn.text
            assert "SSIM" in card.find_element(By.CSS_SELECTOR, ".facts").text
            assert card.find_elements(By.CSS_SELECTOR, ".box")  # the face is boxed
            # the viewer's difference view loads an image from the API
            card.find_element(By.XPATH, ".//button[text()='Difference']").click()
            wait.until(
                lambda d: (
                    d.execute_script("return document.querySelector('.card img[alt^=difference]').naturalWidth") > 0
                )
            )
            requests = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert any(r.endswith("/events") for r in requests)  # progress came pushed, as server-sent events
            card.find_element(By.CSS_SELECTOR, "a.download").click()
            saved = _downloaded(downloads)

            # the reading view reads the downloaded copy, as a user checking a cloak would
            driver.find_element(By.CSS_SELECTOR, '.tab[data-view="read"]').click()
            driver.find_element(By.ID, "read-files").send_keys(str(saved))
            driver.find_element(By.ID, "read-go").click()
            read = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#read-results .card")))
            assert read.find_elements(By.CSS_SELECTOR, '.rec[data-recognizer="cnn"] .row')
            assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        finally:
            driver.quit()
    with Image.open(photo) as a, Image.open(saved) as b:
        assert b.format == a.format and b.size == a.size
        assert np.any(np.asarray(a.convert("RGB")) != np.asarray(b.convert("RGB")))


@contextmanager
def _served_here(monkeypatch, held_out: list[dict | None]) -> Iterator[str]:
    """The app in this process (so its cloak can be faked): a tailored cloak that reports 2 faces' steps
    slowly, then the universal cloak's photo, with `held_out` (one per photo, in order) as its estimate."""
    import socket

    import uvicorn

    from emocloak.web import jobs as jobs_module
    from emocloak.web.app import create_app

    real, estimates = jobs_module.protect_file, iter(held_out)

    def fake(src, out_dir, progress=None, **kwargs):
        progress("finding faces", 0.0)
        for step in range(1, 21):
            time.sleep(0.15)
            progress(f"cloaking face {1 + (step - 1) // 10} of 2", step / 20)
        kwargs.pop("strength", None)
        dst, info = real(src, out_dir, **{**kwargs, "method": "universal"})
        info.pop("held_out", None)
        if (estimate := next(estimates)) is not None:
            info["held_out"] = estimate
        return dst, info

    monkeypatch.setattr(jobs_module, "protect_file", fake)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(30)


def test_progress_and_held_out_estimate_on_the_page(tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from test_web import HELD_OUT

    with _served_here(monkeypatch, [HELD_OUT, None]) as url:
        driver = chromium(tmp_path)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 120)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#method option"))
            photo = str(emocloak.sample_photo_path())
            driver.find_element(By.ID, "cloak-files").send_keys(f"{photo}\n{photo}")
            driver.find_element(By.ID, "cloak-go").click()
            # mid-job: what each photo is doing, and time left (the cloak's own pace; nothing measured yet)
            working = wait.until(
                lambda d: [
                    c
                    for c in d.find_elements(By.CSS_SELECTOR, '.card[data-status="working"]')
                    if "cloaking face" in c.find_element(By.CSS_SELECTOR, ".stage .what").text
                ]
            )[0]
            assert re.search(r"cloaking face [12] of 2", working.find_element(By.CSS_SELECTOR, ".what").text)
            assert "left in the cloak" in working.find_element(By.CSS_SELECTOR, ".eta").text
            queued = driver.find_elements(By.CSS_SELECTOR, '.card[data-status="queued"] .stage')
            assert queued and "queued: next in line" in queued[0].text and "estimating…" in queued[0].text
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '.card[data-status="done"] .rec')) > 0)
            first, second = driver.find_elements(By.CSS_SELECTOR, ".card")
            # the honest estimate, with its warning, above the viewer and beside face 1's readings
            box = first.find_element(By.CSS_SELECTOR, ".heldout")
            assert "Honest estimate: protected against 1 of 3 held-out readers" in box.text
            assert "weakly protected" in box.find_element(By.CSS_SELECTOR, ".banner[role=alert]").text
            line = first.find_element(By.CSS_SELECTOR, ".face .ho-face")
            assert "1 of 3" in line.text and "landmarks: found no face" in line.text and "weak" in line.text
            held = {
                e.find_element(By.XPATH, "../..").get_attribute("data-recognizer")
                for e in first.find_elements(By.CSS_SELECTOR, ".rec .held")
            }
            assert held == {"cnn", "photo", "cnn-faat", "landmarks"} & set(emocloak.available_recognizers())
            # the second photo, measured by the first: a time left, then no estimate at all, and no error
            wait.until(lambda d: second.get_attribute("data-status") in ("working", "done"))
            wait.until(
                lambda d: (
                    second.get_attribute("data-status") == "done"
                    or re.search(r"left|almost done", second.find_element(By.CSS_SELECTOR, ".eta").text)
                )
            )
            wait.until(lambda d: second.get_attribute("data-status") == "done")
            wait.until(lambda d: second.find_elements(By.CSS_SELECTOR, ".rec"))
            assert not second.find_elements(By.CSS_SELECTOR, ".heldout, .ho-face, .held")
            assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        finally:
            driver.quit()
