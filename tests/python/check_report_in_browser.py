"""Opens a run's report.html in headless Chromium (Debian's chromium + chromium-driver) with the
network disabled in a 1280-pixel-wide window, and checks that every picture loaded, the tables
are there, nothing widens the page beyond the window (wide tables scroll in their own box), and
the classification shows the ceiling rows exactly when the dataset has ground truth.

Usage: python3 check_report_in_browser.py <report.html> <screenshot.png>
           [--ceiling yes|no] [--unclassified CELL]...

--ceiling yes: the true-3D ceiling rows and the recovered-share line must be there; no: absent.
--unclassified CELL: the cell must be in the list of cells not classified.
"""

import argparse
import pathlib
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def fail(msg: str) -> None:
    print(f"check_report_in_browser: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("page")
    ap.add_argument("shot")
    ap.add_argument("--ceiling", choices=["yes", "no"])
    ap.add_argument("--unclassified", action="append", default=[])
    args = ap.parse_args()
    page = pathlib.Path(args.page).resolve()
    shot = pathlib.Path(args.shot).resolve()
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,2000"]:
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
        for needle in ["macro F1", "minority macro F1", "2D + predicted 3D", "Confusion", "Timeline",
                       "repetitions"]:
            if needle not in text:
                fail(f"the page does not mention {needle!r}")
        if tables < 3:
            fail(f"the page has {tables} tables; expected the run summary and the classification tables")
        # Nothing widens the page: wide tables scroll inside their own box.
        widths = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        if widths[0] > widths[1]:
            wide = driver.execute_script(
                "const w = document.documentElement.clientWidth;"
                "return [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > w)"
                ".slice(0, 5).map(e => e.tagName + '.' + e.className)")
            fail(f"the page is {widths[0]} px wide in a {widths[1]} px window; too wide: {wide}")
        ceiling_rows = driver.execute_script("return document.querySelectorAll('tr.ceiling').length")
        if args.ceiling == "yes":
            if ceiling_rows != 2 or "2D + true 3D" not in text:
                fail(f"the dataset has ground truth but the page shows {ceiling_rows} ceiling rows (expected 2)")
            answer = driver.execute_script("const p = document.querySelector('p.answer'); return p ? p.innerText : ''")
            if "2D + true 3D" not in answer or not ("recover" in answer or "no gain" in answer):
                fail(f"the page does not state the share of the ceiling's gain the predicted shapes recover: {answer!r}")
            if "Reconstruction" not in text or "floor IoU" not in text:
                fail("the page has no reconstruction table (model against the extrusion floor)")
        elif args.ceiling == "no":
            if ceiling_rows != 0 or "true 3D" in text:
                fail(f"the dataset has no ground truth but the page shows {ceiling_rows} ceiling rows")
            if "no ceiling" not in text:
                fail("the page does not say why there is no ceiling")
        if args.unclassified:
            listed = driver.execute_script(
                "const h = document.getElementById('unclassified');"
                "if (!h) return null;"
                "let t = h.nextElementSibling; while (t && !t.querySelector('table')) t = t.nextElementSibling;"
                "return t ? t.innerText : null")
            if listed is None:
                fail("the page has no list of cells not classified")
            for cell in args.unclassified:
                if cell not in listed:
                    fail(f"{cell} is not in the list of cells not classified: {listed[:500]}")
        driver.save_screenshot(str(shot))
        print(f"check_report_in_browser: {len(images)} pictures loaded, {tables} tables; screenshot {shot}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
