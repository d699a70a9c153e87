"""The web app in a real browser: headless Chromium uploads a photo, waits, reads the result, downloads.

Skips only where Chromium is missing, and not in CI (`.ci/run` sets EMOCLOAK_REQUIRE_BROWSER=1 and
installs it). Uses a TCCE test photo, or the shipped sample where ../shared/data is absent.
"""

from __future__ import annotations

import os
import time
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
