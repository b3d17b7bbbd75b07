"""Open a page from file:// in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
and print, as JSON, what a person would see: each chart's size and marks, each video's duration,
each image's width, the console's errors and every URL the page asked for; a full-page
screenshot goes to the given PNG.

    python -m tests.browser PAGE.html SCREENSHOT.png

The tests run it in a network namespace with only loopback, so a page that needs the network
shows it (tests/test_page.py).
"""

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
# as root, without a sandbox; no background connections (they would only fail here)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MEDIA_SECONDS = 30  # to load every video's metadata

CHARTS = """() => [...document.querySelectorAll('.chart svg')].map(svg => {
    const box = svg.getBoundingClientRect();
    return {width: box.width, height: box.height, marks: svg.querySelectorAll('path, use, circle').length};
})"""
VIDEOS = """() => Promise.all([...document.querySelectorAll('video')].map(video =>
    video.readyState >= 1 ? video.duration : new Promise(done => {
        video.addEventListener('loadedmetadata', () => done(video.duration));
        video.addEventListener('error', () => done(-1));
    })))"""
IMAGES = "() => [...document.images].map(image => image.complete ? image.naturalWidth : 0)"


def look(page_path, screenshot):
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url[:80]))
            page.set_default_timeout(MEDIA_SECONDS * 1000)
            page.goto(Path(page_path).resolve().as_uri(), wait_until="load")
            seen = {
                "title": page.title(),
                "charts": page.evaluate(CHARTS),
                "videos": page.evaluate(VIDEOS),
                "images": page.evaluate(IMAGES),
                "missing": page.evaluate("() => document.querySelectorAll('.missing').length"),
                "text": page.inner_text("body"),
            }
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {**seen, "errors": errors, "requests": requests}


if __name__ == "__main__":
    print(json.dumps(look(*sys.argv[1:3])))
