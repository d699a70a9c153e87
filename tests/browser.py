"""Helpers for real-browser checks: `emocloak serve` in a subprocess and Debian's headless Chromium.

Used by tests/test_web_browser.py and scripts/web_screenshots.py. Nothing here downloads anything:
Selenium is pointed at the system `chromium` and `chromedriver` (`.ci/run` installs them).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TCCE = ROOT.parent / "shared" / "data" / "tcce"


def browser_missing() -> str | None:
    """Why no real browser can run here, or None."""
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"{exe} not installed (apt-get install -y chromium chromium-driver; .ci/run does it)"
    return None


def tcce_test_photo(label: str = "happiness") -> Path | None:
    """A TCCE photo of a held-out test performer, or None where the shared data is absent."""
    manifest = TCCE / "manifest.csv"
    if not manifest.is_file():
        return None
    for line in manifest.read_text().splitlines()[1:]:
        path, lab, _, _, split = line.split(",")[:5]
        if split == "test" and lab == label:
            return TCCE / path
    return None


@contextmanager
def running_server(*args: str, timeout: float = 120) -> Iterator[tuple[str, list[str]]]:
    """`emocloak serve --port 0` (a free loopback port); yields its URL and its output lines; Ctrl+C at the end."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "emocloak", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError(f"emocloak serve did not start: {seen}") from None
            seen.append(line.rstrip())
            if line.startswith("emocloak web app: "):
                url = line.split()[3]
                break
            if proc.poll() is not None:
                raise RuntimeError(f"emocloak serve exited: {seen}")
        yield url, seen
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        while not lines.empty():
            seen.append(lines.get().rstrip())


def chromium(downloads: Path, width: int = 1280, height: int = 900):
    """Headless Chromium via Selenium, saving downloads into `downloads`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"):
        opts.add_argument(arg)
    opts.add_argument(f"--window-size={width},{height}")
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver
