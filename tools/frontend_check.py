"""Open workflow JSON files in ComfyUI's real frontend (headless Chromium) and report what the frontend reports.

The page is ComfyUI's own frontend served by a ComfyUI server (``ComfyServer(frontend=True)`` or any URL); each
workflow goes through the frontend's ``app.loadGraphData`` — the code path of "Open" and of the template browser —
and the missing node types and missing models that the frontend would show in its dialogs are read back, with every
console error, uncaught exception and failed request of the page. Chromium is driven over the Chrome DevTools
protocol (websocket-client), no browser download needed: Debian's ``chromium`` is enough.

    python tools/frontend_check.py workflows/*.json                       # starts its own model-less server
    python tools/frontend_check.py --server http://127.0.0.1:8188 workflows/vmdiff_manual.json \
        --screenshot docs/vmdiff_manual_graph.png
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import requests
import websocket

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--remote-allow-origins=*", "--remote-debugging-port=0"]


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if name and shutil.which(name):
            return shutil.which(name)
    raise RuntimeError("no Chromium found: `apt-get install -y chromium` (scripts/install_chromium.sh) or set CHROMIUM")


class Browser:
    """One headless Chromium page driven over the DevTools protocol (context manager). ``problems`` collects console
    errors, uncaught exceptions and failed loads of the page as strings."""

    def __init__(self, width: int = 1600, height: int = 1000, executable: str | None = None, timeout: float = 60):
        self.width, self.height, self.timeout = width, height, timeout
        self.executable = executable or find_chromium()
        self.proc: subprocess.Popen | None = None
        self.profile: str | None = None
        self.ws: websocket.WebSocket | None = None
        self.ids = itertools.count(1)
        self.problems: list[str] = []

    def __enter__(self) -> "Browser":
        self.profile = tempfile.mkdtemp(prefix="vmdiff-chromium-")
        cmd = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
               f"--window-size={self.width},{self.height}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(self.profile) / "DevToolsActivePort"
            deadline = time.monotonic() + self.timeout
            while not (port_file.exists() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Chromium did not start (exit code {self.proc.poll()})")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
                     if t["type"] == "page"]
            self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                                  suppress_origin=True)
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    def _event(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [a.get("value", a.get("description", "")) for a in params.get("args", [])]
            self.problems.append("console.error: " + " ".join(str(a) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.problems.append("exception: " + str(details.get("exception", {}).get("description")
                                                      or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.problems.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())

    def send(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def pump(self, seconds: float) -> None:
        """Let the page run for a while, collecting its events."""
        deadline = time.monotonic() + seconds
        self.ws.settimeout(0.1)
        try:
            while time.monotonic() < deadline:
                try:
                    self._event(json.loads(self.ws.recv()))
                except websocket.WebSocketTimeoutException:
                    pass
        finally:
            self.ws.settimeout(self.timeout)

    def eval(self, expression: str):
        """Evaluate JS in the page (promises awaited); returns the JSON value."""
        out = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in out:
            details = out["exceptionDetails"]
            raise RuntimeError(f"page JS failed: {details.get('exception', {}).get('description') or details}")
        return out.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None, what: str = "") -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eval(f"Boolean({expression})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page: {what or expression} not true after {timeout or self.timeout} s")
            self.pump(0.25)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screenshot(self, path: Path, **params) -> Path:
        """A PNG of the page (``params``: Page.captureScreenshot's, e.g. clip)."""
        data = self.send("Page.captureScreenshot", format="png", **params)["data"]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


#: What ComfyUI's frontend asks a fresh install for and gets 404 for (no user.css, no saved workflows, no favicon in
#: the frontend package): page-load noise of any fresh ComfyUI, not caused by a workflow.
FRESH_INSTALL_404 = ("/api/userdata/user.css", "/user.css", "/favicon.ico", "/api/userdata?dir=workflows&",
                     "/api/userdata?dir=subgraphs&", "/api/userdata/comfy.templates.json")
#: Settings for a quiet, readable canvas: no first-run template browser, no minimap, no missing-model dialog.
PAGE_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}

LOAD_JS = """(async (workflow, name) => {
    const seen = {missing_nodes: [], missing_models: [], model_folders: []};
    // the frontend's own detection results, taken where it would open its dialogs
    app.showMissingNodesError = (types) => { seen.missing_nodes = types.map(t => typeof t === 'string' ? t : t.type); };
    app.showMissingModelsError = (models, paths) => {
        seen.missing_models = models; seen.model_folders = Object.keys(paths || {}); };
    await app.loadGraphData(workflow, true, true, name);
    await new Promise(r => setTimeout(r, 300));
    seen.nodes = app.graph.nodes.length;
    seen.links = app.graph.links instanceof Map ? app.graph.links.size : Object.keys(app.graph.links).length;
    seen.types = app.graph.nodes.map(n => n.type);
    return seen;
})"""


def is_fresh_install_noise(problem: str) -> bool:
    return "status of 404" in problem and any(p in problem for p in FRESH_INSTALL_404)


def prepare_server(client, workflows: list[dict], tmp: Path) -> None:
    """Quiet settings, and the images the workflows' LoadImage nodes name (synthetic objects) in the input folder."""
    from tools.run_workflow import synthetic_objects

    for key, value in PAGE_SETTINGS.items():
        client.http.post(client.url + f"/api/settings/{key}", json=value, timeout=30).raise_for_status()
    names = sorted({n["widgets_values"][0] for wf in workflows for n in wf["nodes"] if n["type"] == "LoadImage"})
    pictures = synthetic_objects(Path(tmp), size=128)
    for i, name in enumerate(names):
        client.upload_image(pictures[i % len(pictures)], name)


def open_frontend(browser: Browser, url: str, timeout: float = 120) -> list[str]:
    """Load the frontend page; returns the problems of the page load (fresh-install 404s included)."""
    browser.goto(url)
    browser.wait_for("window.app && window.app.graph && window.app.vueAppReady && document.readyState === 'complete'"
                     " && window.LiteGraph && Object.keys(LiteGraph.registered_node_types).length > 0", timeout,
                     "ComfyUI frontend ready")
    browser.pump(1.0)
    problems, browser.problems = browser.problems, []
    return problems


def load_workflow(browser: Browser, workflow: dict, name: str) -> dict:
    """Open one workflow through app.loadGraphData; returns what the frontend found and the page's problems."""
    browser.problems = []
    seen = browser.eval(f"{LOAD_JS}({json.dumps(workflow)}, {json.dumps(name)})")
    browser.pump(0.5)
    seen["problems"], browser.problems = browser.problems, []
    return seen


BOUNDS_JS = """(() => {
    const title = LiteGraph.NODE_TITLE_HEIGHT || 30;
    let b = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of app.graph.nodes) {
        b = [Math.min(b[0], n.pos[0]), Math.min(b[1], n.pos[1] - title),
             Math.max(b[2], n.pos[0] + n.size[0]), Math.max(b[3], n.pos[1] + n.size[1])];
    }
    return b;
})()"""


def screenshot_graph(browser: Browser, path: Path, scale: float = 1.0, margin: int = 30) -> Path:
    """A PNG of the loaded graph alone at ``scale`` (1 = the frontend's 100 % zoom): the window is grown to fit."""
    if not browser.eval("document.body.classList.contains('vmdiff-shot')"):  # hide the UI around the canvas once
        browser.eval("app.extensionManager.command.execute('Workspace.ToggleFocusMode'); "
                     "document.body.classList.add('vmdiff-shot')")
    x0, y0, x1, y1 = browser.eval(BOUNDS_JS)
    width, height = int((x1 - x0) * scale) + 2 * margin, int((y1 - y0) * scale) + 2 * margin
    browser.send("Emulation.setDeviceMetricsOverride", width=width + 400, height=height + 300, deviceScaleFactor=1,
                 mobile=False)
    browser.pump(1.0)
    rect = browser.eval(f"""(() => {{
        const ds = app.canvas.ds; ds.scale = {scale};
        ds.offset = [{margin / scale} - {x0}, {margin / scale} - {y0}];
        app.canvas.setDirty(true, true); app.canvas.draw(true, true);
        const r = app.canvas.canvas.getBoundingClientRect(); return [r.left, r.top];
    }})()""")
    browser.pump(1.0)
    return browser.screenshot(path, clip={"x": rect[0], "y": rect[1], "width": width, "height": height, "scale": 1})


def main(argv=None) -> int:
    from tools.comfy_server import ComfyClient, ComfyServer

    ap = argparse.ArgumentParser(description="Open workflows in ComfyUI's real frontend (headless Chromium).")
    ap.add_argument("workflows", nargs="*", type=Path, help="UI-format workflow JSON (default: workflows/*.json)")
    ap.add_argument("--server", help="a running ComfyUI that serves its frontend (default: start a model-less one)")
    ap.add_argument("--screenshot", type=Path, help="PNG of the first workflow's full graph")
    ap.add_argument("--size", default="2600x1400", help="browser window WIDTHxHEIGHT")
    args = ap.parse_args(argv)
    paths = args.workflows or sorted((REPO_ROOT / "workflows").glob("*.json"))
    workflows = {p.stem: json.loads(p.read_text()) for p in paths}
    width, height = (int(v) for v in args.size.split("x"))
    failed = False
    # --server: that server is not ours to stop
    serving = nullcontext(ComfyClient(args.server)) if args.server else ComfyServer(None, frontend=True)
    with tempfile.TemporaryDirectory() as tmp, serving as server:
        prepare_server(server, list(workflows.values()), Path(tmp))
        with Browser(width, height) as browser:
            page = [p for p in open_frontend(browser, server.url) if not is_fresh_install_noise(p)]
            if page:
                print("page load problems:", *page, sep="\n  ")
                failed = True
            for i, (name, wf) in enumerate(workflows.items()):
                seen = load_workflow(browser, wf, name)
                bad = seen["missing_nodes"] or seen["problems"]
                failed |= bool(bad)
                print(f"{'FAIL' if bad else 'ok  '} {name}: {seen['nodes']} nodes, {seen['links']} links, missing node "
                      f"types {seen['missing_nodes']}, {len(seen['missing_models'])} model(s) to download, "
                      f"problems {seen['problems']}")
                if i == 0 and args.screenshot:
                    print("screenshot:", screenshot_graph(browser, args.screenshot))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
