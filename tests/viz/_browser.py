"""Open a page in a real headless Chromium (Debian's ``chromium``) through the DevTools protocol: console errors,
image decoding and a screenshot, as a person opening the report would see it.

Chromium listens on a loopback port only; the page is a local file, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What the browser saw: console / log errors and uncaught exceptions, each image's decoded width, the
    screenshot (PNG bytes) and the page title."""

    errors: list[str] = field(default_factory=list)
    image_widths: list[int] = field(default_factory=list)
    screenshot_png: bytes = b""
    title: str = ""
    requests: list[str] = field(default_factory=list)


_IMAGES = """Promise.all(Array.from(document.images).map(img => img.decode().then(() => img.naturalWidth,
  () => 0))).then(widths => JSON.stringify(widths))"""


async def _session(ws_url: str, page_url: str, width: int, height: int, timeout_s: float) -> PageResult:
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(ws_url, max_message_size=256 << 20)
    result = PageResult()
    next_id = 0
    pending: dict[int, asyncio.Future] = {}
    loaded = asyncio.get_running_loop().create_future()

    async def reader() -> None:
        while True:
            message = await conn.read_message()
            if message is None:
                return
            msg = json.loads(message)
            if "id" in msg and msg["id"] in pending:
                pending.pop(msg["id"]).set_result(msg)
                continue
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                result.errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                             for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                result.errors.append("exception: " + str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                result.errors.append("log: " + str(params["entry"].get("text")))
            elif method == "Network.requestWillBeSent":
                result.requests.append(str(params.get("request", {}).get("url", ""))[:80])
            elif method == "Page.loadEventFired" and not loaded.done():
                loaded.set_result(True)

    task = asyncio.ensure_future(reader())

    async def call(method: str, **params):
        nonlocal next_id
        next_id += 1
        fut = asyncio.get_running_loop().create_future()
        pending[next_id] = fut
        conn.write_message(json.dumps({"id": next_id, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, timeout_s)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    try:
        for domain in ("Runtime", "Log", "Page", "Network"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                   mobile=False)
        await call("Page.navigate", url=page_url)
        await asyncio.wait_for(loaded, timeout_s)
        widths = await call("Runtime.evaluate", expression=_IMAGES, awaitPromise=True, returnByValue=True)
        result.image_widths = json.loads(widths["result"]["value"])
        result.title = (await call("Runtime.evaluate", expression="document.title",
                                   returnByValue=True))["result"]["value"]
        shot = await call("Page.captureScreenshot", format="png")
        result.screenshot_png = base64.b64decode(shot["data"])
        await asyncio.sleep(0.2)  # late console messages
    finally:
        task.cancel()
        conn.close()
    return result


def open_page(path: Path, *, width: int = 1400, height: int = 1800, timeout_s: float = 60.0) -> PageResult:
    """Load ``path`` in headless Chromium and report what it saw (raises if Chromium cannot be started)."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium")
    with tempfile.TemporaryDirectory(prefix="tomopick-chromium-") as profile:
        proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            port = None
            deadline = time.monotonic() + timeout_s
            assert proc.stderr is not None
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line and proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with status {proc.returncode}")
                found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if found:
                    port = int(found.group(1))
                    break
            if port is None:
                raise RuntimeError("chromium did not open its DevTools port")
            # keep draining its stderr (D-Bus chatter) so that a full pipe never blocks the browser
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next(t for t in targets if t.get("type") == "page")
            return asyncio.run(_session(page["webSocketDebuggerUrl"], path.resolve().as_uri(), width, height,
                                        timeout_s))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
