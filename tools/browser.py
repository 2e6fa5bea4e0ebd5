"""Headless Chromium over the DevTools protocol: open a report from disk, run JavaScript in it, take a screenshot.

Used by the report-site tests and by ``python -m tools.browser PAGE OUT`` (docs/results.md's picture of the
index). Needs a
``chromium`` binary (Debian: ``apt-get install chromium``; ``make test`` installs it) and websocket-client;
no webdriver, nothing is downloaded, and the browser runs with networking off.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Chromium found (tried " + ", ".join(CANDIDATES) + "); install it with "
        "`apt-get install -y chromium` (make test does)"
    )


class Browser:
    """One headless Chromium tab. ``with Browser() as b: b.open(path); b.evaluate("document.title")``."""

    def __init__(self, width: int = 1280, height: int = 1600, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="lesionlab-chromium-"))
        self.proc = subprocess.Popen(
            [
                chromium_binary(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-extensions",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._id = 0
        self.ws = self._connect()
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _connect(self):
        import websocket

        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode} before opening DevTools")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        while True:
            try:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
                page = next(t for t in targets if t.get("type") == "page")
                break
            except (OSError, StopIteration):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return websocket.create_connection(page["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True)

    def send(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable results)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error in {expression[:80]!r}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def open(self, page: str | Path) -> None:
        """Load a file (path) or URL and wait until the document and its images have loaded."""
        url = Path(page).resolve().as_uri() if not str(page).startswith(("file:", "http:", "https:")) else str(page)
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        time.sleep(0.2)
        while self.evaluate("document.readyState") != "complete" or not self.evaluate(
            "Array.from(document.images).every(i => i.complete)"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.1)

    def screenshot(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: what a reviewer's browser shows: rows of the leaderboard, images and whether each decoded, requests that left disk
PAGE_CHECK = """(() => ({
  title: document.title,
  leaderboard_rows: document.querySelectorAll('#leaderboard tbody tr').length,
  images: Array.from(document.images).map(i => i.naturalWidth),
  nav: Array.from(document.querySelectorAll('.ll-nav a')).map(a => a.getAttribute('href')),
  disclaimer: document.body.innerText.includes('Research and education only'),
  remote: performance.getEntriesByType('resource').map(r => r.name)
    .filter(n => !n.startsWith('file:') && !n.startsWith('data:')),
}))()"""


def check_page(browser: Browser, page: str | Path) -> dict:
    browser.open(page)
    return browser.evaluate(PAGE_CHECK)


def screenshot(page: str | Path, out: str | Path, width: int = 1280, height: int = 1600) -> dict:
    """Open ``page`` headless, save a PNG of the first screen, return :data:`PAGE_CHECK`'s findings."""
    with Browser(width, height) as b:
        found = check_page(b, page)
        b.screenshot(out)
    return found


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m tools.browser", description="open a report page in headless Chromium, check it and save a PNG"
    )
    p.add_argument("page", help="an HTML file, e.g. reports/ham10000/index.html")
    p.add_argument("out", help="where to write the PNG")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1600)
    args = p.parse_args(argv)
    found = screenshot(args.page, args.out, args.width, args.height)
    broken = [i for i, w in enumerate(found["images"]) if not w]
    print(
        f"{args.out}: {found['title']!r}, {found['leaderboard_rows']} leaderboard rows, {len(found['images'])} "
        f"images ({len(broken)} not decoded), {len(found['remote'])} requests off disk"
    )
    return 1 if broken or found["remote"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
