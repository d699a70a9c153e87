"""Screenshots of the web app for the README: `emocloak serve` driven by headless Chromium.

    python scripts/web_screenshots.py            # writes docs/web_desktop.png and docs/web_phone.png

Desktop (1280 px wide): the shipped sample photo (public domain) and its mirror image, cloaked
with the page's default method (the tailored cloak); phone (390 px wide): the sample photo, universal
cloak. Research photos (TCCE, FER+) never go into a committed picture.
Needs chromium and chromium-driver (see .ci/run).
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium, running_server  # noqa: E402


def full_page(driver, out: Path, until: str) -> None:
    """The page from the top to the bottom of the element `until` (CSS selector), beyond the window."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    js = f"const r = document.querySelector({until!r}).getBoundingClientRect(); return r.bottom + window.scrollY + 12"
    height = min(size["height"], driver.execute_script(js))
    clip = {"x": 0, "y": 0, "width": size["width"], "height": height, "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
    out.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {out} ({size['width']:.0f}x{height:.0f} css px)")


def cloak(driver, url: str, photos: list[Path], method: str | None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 300)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#method option"))
    if method:
        Select(driver.find_element(By.ID, "method")).select_by_value(method)
    driver.find_element(By.ID, "cloak-files").send_keys("\n".join(map(str, photos)))
    driver.find_element(By.ID, "cloak-go").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '.card[data-status="done"] .rec')) > 0)
    wait.until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, '.card[data-status="queued"], .card[data-status="working"]')
    )
    wait.until(
        lambda d: d.execute_script(
            "return [...document.images].filter(i => i.getAttribute('src')).every(i => i.complete && i.naturalWidth)"
        )
    )


def sample_photos(folder: Path) -> list[Path]:
    """The shipped sample, its mirror image, and the sample again: copies under names the page shows."""
    from PIL import Image, ImageOps

    import emocloak

    with Image.open(emocloak.sample_photo_path()) as im:
        im.save(folder / "astronaut.jpg", quality=95)
        ImageOps.mirror(im).save(folder / "astronaut-mirrored.jpg", quality=95)
    return [folder / "astronaut.jpg", folder / "astronaut-mirrored.jpg", folder / "astronaut.jpg"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--method", default=None, help="Desktop shot's method [the page's default]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_server("--workers", "1") as (url, _):
        photos = sample_photos(Path(tmp))
        driver = chromium(Path(tmp), 1280, 900)
        try:
            cloak(driver, url, photos[:2], args.method)
            full_page(driver, args.out / "web_desktop.png", ".card")  # the first photo, whole
        finally:
            driver.quit()
        driver = chromium(Path(tmp), 390, 844)
        try:
            metrics = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            cloak(driver, url, photos[2:], "universal")
            full_page(driver, args.out / "web_phone.png", ".card .rec:nth-child(2)")  # down to the 2nd reading
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
