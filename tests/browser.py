"""Debian's headless Chromium, driven over the DevTools protocol: pages as a browser shows
them (their layout at a given width, their links, a screenshot), no browser download."""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0", "--remote-allow-origins=*"]


class Browser:
    def __init__(self) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("chromium is not installed (scripts/setup.sh installs Debian's)")
        self.profile = Path(tempfile.mkdtemp(prefix="imagekit-chromium-"))
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}",
                                         "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                pytest.fail("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        target = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60)
        self.ids = itertools.count(1)
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def open(self, url: str, width: int, height: int = 900) -> int:
        """Load URL at this viewport width (a phone's is mobile); the HTTP status."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=width < 600)
        self.call("Network.enable")
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": "Page.navigate",
                                 "params": {"url": url}}))
        status = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if (message.get("method") == "Network.responseReceived"
                    and message["params"]["type"] == "Document"):
                status = int(message["params"]["response"]["status"])
            if message.get("method") == "Page.loadEventFired":
                return status
        raise AssertionError(f"{url} did not load within 30 s")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The whole page, as long as it is."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


class Served:
    """A folder served over HTTP on loopback, as a web server would serve the site."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def check_site(dist: Path, artifacts: Path) -> dict[str, Any]:
    """Every page of dist/site as Chromium shows it, at a phone's width and a wide
    screen's: it loads, nothing is wider than the screen, every link on it answers.
    Screenshots of each page at both widths go to ARTIFACTS. What was seen, per page."""
    served = Served(dist)
    browser = Browser()
    seen: dict[str, Any] = {}
    try:
        pages = sorted(p.name for p in (dist / "site").glob("*.html"))
        for page in pages:
            for width in (390, 1280):
                url = f"{served.url}/site/{page}"
                assert browser.open(url, width) == 200, url
                # Against the screen's width: a phone zooms a too-wide page out, and
                # window.innerWidth grows with it.
                overflow = browser.evaluate("document.documentElement.scrollWidth") - width
                assert overflow <= 0, f"{page} is {overflow}px wider than a {width}px screen"
                links = browser.evaluate("[...document.links].map(a => a.href)")
                title = browser.evaluate("document.title")
                headings = browser.evaluate(
                    "[...document.querySelectorAll('h1, h2')].map(h => h.textContent.trim())")
                browser.screenshot(artifacts / f"{page.removesuffix('.html')}-{width}.png")
                seen[page] = {"title": title, "links": links, "headings": headings}
        for page, found in seen.items():
            for link in found["links"]:
                if not link.startswith(served.url):
                    continue  # the catalog's source repository: not reachable from here
                answer = requests.get(link.split("#")[0], timeout=10)
                assert answer.status_code == 200, f"{page}: {link} answered {answer.status_code}"
    finally:
        browser.close()
        served.close()
    return seen
