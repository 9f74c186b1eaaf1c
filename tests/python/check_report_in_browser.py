"""Opens a run's report.html in headless Chromium (Debian's chromium + chromium-driver) with the
network disabled, and checks that every picture loaded and the tables are there.

Usage: python3 check_report_in_browser.py <report.html> <screenshot.png>
"""

import pathlib
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def fail(msg: str) -> None:
    print(f"check_report_in_browser: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    page = pathlib.Path(sys.argv[1]).resolve()
    shot = pathlib.Path(sys.argv[2]).resolve()
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2000"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        # A self-contained page needs no network: make sure it gets none.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
        driver.get(page.as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt || i.src.slice(0, 40), i.complete, i.naturalWidth])")
        if len(images) < 3:
            fail(f"the page shows {len(images)} pictures; expected the confusion matrices, F1 plot and cells")
        broken = [alt for alt, complete, width in images if not complete or width == 0]
        if broken:
            fail(f"{len(broken)} of {len(images)} pictures did not load: {broken[:5]}")
        external = driver.execute_script(
            "return [...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))"
            ".filter(u => /^(https?:)?\\/\\//.test(u))")
        if external:
            fail(f"the page refers to the network: {external[:5]}")
        tables = driver.execute_script("return document.querySelectorAll('table').length")
        text = driver.execute_script("return document.body.innerText")
        for needle in ["macro F1", "2D+3D", "Confusion", "Timeline"]:
            if needle not in text:
                fail(f"the page does not mention {needle!r}")
        if tables < 3:
            fail(f"the page has {tables} tables; expected the run summary and the classification tables")
        driver.save_screenshot(str(shot))
        print(f"check_report_in_browser: {len(images)} pictures loaded, {tables} tables; screenshot {shot}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
