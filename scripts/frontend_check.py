"""Open workflow JSON files in ComfyUI's real frontend (headless Chromium driven by Playwright) and report what the
frontend reports.

The page is ComfyUI's own frontend served by a ComfyUI server (``ComfyServer(frontend=True)``, optionally another
frontend package with ``--front-end-root``, or any URL); each workflow goes through the frontend's
``app.loadGraphData`` (the code path of "Open" and of the template browser) and the missing node types and missing
models that the frontend would show in its dialogs are read back, with every console error, uncaught exception and
failed request of the page, and the nodes' on-screen boxes (litegraph canvas or Vue node renderer) for overlaps.
Playwright drives the system Chromium (Debian's ``chromium``; scripts/install_chromium.sh): no browser download.

    .venv/bin/python -m scripts.frontend_check workflows/*.json             # starts its own model-less server
    .venv/bin/python -m scripts.frontend_check --vue --frontend-version 1.58.1 workflows/vmdiff_manual.json \\
        --screenshot docs/vmdiff_manual_graph_vue.png
    .venv/bin/python -m scripts.frontend_check --vue --frontend-version 1.58.1 --locale zh \\
        workflows/vmdiff_manual.json \\
        --screenshot docs/vmdiff_manual_graph_zh_vue.png
    .venv/bin/python -m scripts.frontend_check --vue --frontend-version 1.58.1 workflows/vmdiff_manual.json \\
        --missing-models docs/missing_models_vue.png
    .venv/bin/python -m scripts.frontend_check --thumbnails                  # rewrites workflows/<name>.jpg
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic"]
#: the newest comfyui-frontend-package checked here (ComfyUI 0.8.0 pins 1.35.9); a test-only download into .cache/
LATEST_FRONTEND = "1.58.1"
PACK = "comfyui-vmdiff"  # the folder name the pack is installed under (vmdiff_cli/comfy_server.PACK_DIR_NAME)


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if name and shutil.which(name):
            return shutil.which(name)
    raise RuntimeError("no Chromium found: `apt-get install -y chromium` (scripts/install_chromium.sh) or set CHROMIUM")


def frontend_root(version: str = LATEST_FRONTEND) -> Path:
    """The ``static`` folder of comfyui-frontend-package==version, pip-installed once into .cache/ (not into any
    environment): what ``--front-end-root`` serves instead of the frontend ComfyUI pins."""
    target = REPO_ROOT / ".cache" / f"comfyui-frontend-{version}"
    static = target / "comfyui_frontend_package" / "static"
    if not (static / "index.html").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        f"comfyui-frontend-package=={version}"], check=True)
    return static


class Browser:
    """One headless Chromium page (context manager). ``problems`` collects console errors, uncaught exceptions and
    failed requests of the page as strings."""

    def __init__(self, width: int = 1600, height: int = 1000, executable: str | None = None, timeout: float = 60,
                 model_sizes: dict[str, int] | None = None):
        self.width, self.height, self.timeout = width, height, timeout
        self.executable = executable or find_chromium()
        self.problems: list[str] = []
        self.responses: list[tuple[str, int]] = []  # (url, HTTP status) of every response the page got
        self.model_sizes = model_sizes
        self.model_requests: list[tuple[str, str]] = []  # (method, url) the page sent to huggingface.co
        self._pw = self._browser = self.page = None

    def __enter__(self) -> "Browser":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=self.executable, args=CHROMIUM_ARGS)
            context = self._browser.new_context(viewport={"width": self.width, "height": self.height},
                                                bypass_csp=self.model_sizes is not None)
            if self.model_sizes is not None:
                context.route("https://huggingface.co/**", self._answer_offline)
            self.page = context.new_page()
            self.page.set_default_timeout(self.timeout * 1000)
            self.page.on("console", self._console)
            self.page.on("pageerror", lambda exc: self.problems.append(f"exception: {exc}"))
            self.page.on("response", lambda r: self.responses.append((r.url, r.status)))
            self.page.on("requestfailed", lambda req: self.problems.append(
                f"request failed: {req.url} {req.failure}"))
        except BaseException:
            self.close()
            raise
        return self

    def _answer_offline(self, route) -> None:
        """``model_sizes`` given: the machine is offline, so huggingface.co is answered here as it answers a user
        online: a HEAD of a known model file gets its ``content-length`` (the size the Missing Models panel
        shows), a GET (the panel's Download button opening the file's URL) a short page; an unknown file 404.
        (The page's other requests off the server are not answered: they fail as on any offline machine.)"""
        request = route.request
        self.model_requests.append((request.method, request.url))
        size = self.model_sizes.get(request.url)
        if size is None:
            route.fulfill(status=404, body="")
        elif request.method == "HEAD":
            route.fulfill(status=200, headers={"content-length": str(size), "access-control-allow-origin": "*"})
        else:
            route.fulfill(status=200, content_type="text/plain", body="a model download (offline test)")

    def _console(self, msg) -> None:
        if msg.type in ("error", "assert"):
            self.problems.append(f"console.error: {msg.text} {msg.location.get('url', '')}".strip())

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._pw is not None:
            self._pw.stop()
        self._pw = self._browser = self.page = None

    def eval(self, expression: str, arg=None):
        """Evaluate JS in the page (a function expression gets ``arg``; promises are awaited)."""
        return self.page.evaluate(expression, arg)

    def wait_for(self, expression: str, timeout: float | None = None) -> None:
        self.page.wait_for_function(expression, timeout=(timeout or self.timeout) * 1000, polling=250)

    def pump(self, seconds: float) -> None:
        """Let the page run for a while."""
        self.page.wait_for_timeout(seconds * 1000)

    def screenshot(self, path: Path, **clip) -> Path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), clip=clip or None, type="jpeg" if str(path).endswith(".jpg") else "png",
                             **({"quality": 85} if str(path).endswith(".jpg") else {}))
        return Path(path)


#: What ComfyUI's frontend asks a fresh install for and gets 404 for (no user.css, no saved workflows, no favicon in
#: the frontend package): page-load noise of any fresh ComfyUI, not caused by a workflow.
FRESH_INSTALL_404 = ("/api/userdata/user.css", "/user.css", "/favicon.ico", "/api/userdata?dir=workflows&",
                     "/api/userdata?dir=subgraphs&", "/api/userdata/comfy.templates.json")
#: Settings for a quiet, readable canvas: no first-run template browser, no minimap.
PAGE_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
VUE_SETTING = "Comfy.VueNodes.Enabled"  # the Vue node renderer ("Nodes 2.0"); frontends before ~1.27 ignore it

#: The frontend's pinia stores by id (a Map): "missingModel" holds the Missing Models list of newer frontends (the
#: Issues panel; 1.58.1: src/platform/missingModel/missingModelStore.ts), "modelToNode" the model folder each
#: loader node type reads (both frontends).
STORES_JS = "(document.querySelector('#vue-app')?.__vue_app__?.config.globalProperties.$pinia?._s ?? new Map())"

LOAD_JS = """async ([workflow, name]) => {
    const seen = {missing_models: [], model_folders: [], missing_models_from: null};
    // the frontend's own missing-model list, taken where it would open its dialog (frontends before ~1.40)
    app.showMissingModelsError = (models, paths) => {
        seen.missing_models = models; seen.model_folders = Object.keys(paths || {});
        seen.missing_models_from = 'app.showMissingModelsError'; };
    await app.loadGraphData(workflow, true, true, name);
    await new Promise(r => setTimeout(r, 500));
    // newer frontends: the missing-model pipeline fills a store after the load (combo options checked, the
    // embedded properties.models joined in, the server's model folders fetched, then the list surfaced)
    const stores = """ + STORES_JS + """, store = stores.get('missingModel'), folders = stores.get('modelToNode');
    // the model folder the frontend itself files each node type's models under (null: not a loader it knows)
    seen.loader_folders = folders ? Object.fromEntries(app.graph.nodes.map(
        (n) => [n.type, folders.getCategoryForNodeType(n.type) ?? null])) : null;
    if (store) {
        for (let t = 0; t < 100 && !Object.keys(store.folderPaths).length; t++) {
            await new Promise(r => setTimeout(r, 100));
        }
        seen.missing_models = (store.missingModelCandidates ?? []).map(
            (m) => ({name: m.name, directory: m.directory ?? null, url: m.url ?? null}));
        seen.model_folders = Object.keys(store.folderPaths);
        seen.missing_models_from = 'missingModel store';
    }
    seen.nodes = app.graph.nodes.length;
    seen.links = app.graph.links instanceof Map ? app.graph.links.size : Object.keys(app.graph.links).length;
    seen.types = app.graph.nodes.map(n => n.type);
    // what the missing-nodes dialog lists, in every frontend: node types the page has no definition for
    seen.missing_nodes = [...new Set(seen.types.filter(t => !(t in LiteGraph.registered_node_types)))];
    return seen;
}"""

#: Each node's box in graph units: the Vue renderer's DOM element (converted back through the canvas transform)
#: when it draws the nodes, else litegraph's bounding box (title bar included).
BOXES_JS = """() => {
    const ds = app.canvas.ds, canvas = app.canvas.canvas.getBoundingClientRect();
    return app.graph.nodes.map((n) => {
        const el = document.querySelector(`[data-node-id="${n.id}"]`);
        if (el) {
            const r = el.getBoundingClientRect();
            const x = (r.left - canvas.left) / ds.scale - ds.offset[0],
                  y = (r.top - canvas.top) / ds.scale - ds.offset[1];
            return {id: n.id, title: n.title, vue: true, box: [x, y, x + r.width / ds.scale, y + r.height / ds.scale]};
        }
        const b = n.getBounding ? Array.from(n.getBounding()) : [n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30];
        return {id: n.id, title: n.title, vue: false, box: [b[0], b[1], b[0] + b[2], b[1] + b[3]]};
    });
}"""


def is_fresh_install_noise(problem: str) -> bool:
    return ("404" in problem or "ERR_ABORTED" in problem) and any(p in problem for p in FRESH_INSTALL_404)


def is_offline_noise(problem: str) -> bool:
    """Newer frontends ask huggingface.co for the size of each model a loader's properties.models names; a server
    that may not reach the internet (--disable-api-nodes sets connect-src 'self') or an offline machine refuses;
    the same for the frontend's look-ups of node packs in the Comfy Registry (api.comfy.org).
    (The answers of one workflow may arrive while the next one loads: any model URL of the pack counts.)"""
    from vmdiff_cli.model_downloads import MODEL_DOWNLOADS

    asks_internet = any(url in problem for _, url in MODEL_DOWNLOADS.values()) or "https://api.comfy.org/" in problem
    return asks_internet and ("Content Security Policy" in problem or "ERR_" in problem or " csp" in problem)


def prepare_server(client, vue: bool = False) -> None:
    """Quiet settings, and the node renderer: Vue ("Nodes 2.0") or the litegraph canvas. The workflows' images are
    the pack's example photos, copied into the input folder when the pack loaded."""
    for key, value in {**PAGE_SETTINGS, VUE_SETTING: vue}.items():
        client.http.post(client.url + f"/api/settings/{key}", json=value, timeout=30).raise_for_status()


def open_frontend(browser: Browser, url: str, timeout: float = 120) -> list[str]:
    """Load the frontend page; returns the problems of the page load (fresh-install 404s included)."""
    browser.page.goto(url)
    browser.wait_for("() => window.app && window.app.graph && window.app.vueAppReady && document.readyState === "
                     "'complete' && window.LiteGraph && Object.keys(LiteGraph.registered_node_types).length > 0",
                     timeout)
    browser.pump(1.0)
    problems, browser.problems = browser.problems, []
    return problems


def load_workflow(browser: Browser, workflow: dict, name: str) -> dict:
    """Open one workflow through app.loadGraphData; returns what the frontend found, the nodes' boxes and the
    page's problems."""
    browser.problems = []
    seen = browser.eval(LOAD_JS, [workflow, name])
    browser.pump(0.5)
    seen["boxes"] = browser.eval(BOXES_JS)
    seen["problems"], browser.problems = browser.problems, []
    return seen


def missing_models_panel(browser: Browser, download: bool = False, close: bool = True) -> list[dict]:
    """Newer frontends (1.58.1): open the Missing Models list the way a user does (the error overlay's "See
    errors" button, else the panel's Errors tab) and read each row as shown: {name, label ("<directory> · <size>"),
    nodes (how many nodes name the model), download (a Download button is offered)}; with ``download`` also click
    each Download button and record the URL the page opened (``url``; needs ``Browser(model_sizes=...)``, which
    answers it offline). ``close``: close the panel again (it takes canvas room, a setting that outlives the page)."""
    page = browser.page
    if not page.get_by_test_id("missing-model-importable-rows").count():
        opener = page.get_by_test_id("error-overlay-see-errors")
        (opener if opener.count() else page.get_by_test_id("panel-tab-errors")).first.click()
        page.get_by_test_id("missing-model-importable-rows").wait_for()
    browser.pump(0.5)
    rows = browser.eval("""() => [...document.querySelectorAll('[data-testid=missing-model-importable-rows] > *')]
        .map((row) => {
            const count = row.querySelector('[data-testid=missing-model-reference-count]')?.innerText.trim();
            const lines = row.innerText.split('\\n').map((l) => l.trim()).filter((l) => l && l !== count);
            return {name: lines[0], label: lines[1] ?? '', nodes: Number(count ?? 1),
                    download: Boolean(row.querySelector('[data-testid=missing-model-download]'))}; })""")
    for i, row in enumerate(rows):
        if download and row["download"]:
            opened = len(browser.model_requests)
            with page.context.expect_page() as tab:
                page.locator("[data-testid=missing-model-importable-rows] > *").nth(i).get_by_test_id(
                    "missing-model-download").click()
            tab.value.wait_for_load_state()
            row["url"] = next((url for method, url in browser.model_requests[opened:] if method == "GET"), None)
            tab.value.close()
    if close:
        browser.eval("() => app.extensionManager.setting.set('Comfy.RightSidePanel.IsOpen', false)")
        browser.pump(0.5)
    return rows


def overlaps(boxes: list[dict], gap: float = 0) -> list[tuple[str, str]]:
    """Pairs of node titles whose boxes intersect (closer than ``gap``)."""
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a["box"], b["box"]
            if ax0 < bx1 + gap and bx0 < ax1 + gap and ay0 < by1 + gap and by0 < ay1 + gap:
                out.append((f"{a['id']} {a['title']}", f"{b['id']} {b['title']}"))
    return out


def template_thumbnails(browser: Browser, names: list[str]) -> dict:
    """Open the frontend's template browser on this pack's category and bring every workflow's card into view;
    returns the HTTP status of each ``<name>.jpg`` as the page fetched it ({name: status or None}) and the sizes of
    the pictures the dialog shows (sorted [[naturalWidth, naturalHeight], ...]; a broken picture has width 0)."""
    browser.eval("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    browser.wait_for("() => document.querySelector('[role=dialog]')")
    browser.pump(1.0)
    find = """([name, click]) => {
        const el = [...document.querySelectorAll('[role=dialog] *')].find(
            (e) => e.children.length === 0 && e.textContent.trim() === name);
        if (el) { el.scrollIntoView({block: 'center'}); if (click) el.click(); }
        return Boolean(el);
    }"""
    # the pack's category: the nav entry named after the pack folder, clicked (again, each second) until the dialog
    # lists the pack's first workflow (a click while the dialog is still filling its lists may be lost)
    browser.page.wait_for_function(f"([pack, first]) => ({find})([first, false]) || !({find})([pack, true])",
                                   arg=[PACK, names[0]], polling=1000, timeout=30_000)
    browser.pump(1.0)
    shown = {}
    # this workflow's card: the smallest ancestor of its title that holds a picture and no other title (None while
    # the card has no picture yet); its pictures are blob: URLs, so they are found by place, not by address
    card = """([name, names]) => {
        const title = [...document.querySelectorAll('[role=dialog] *')].find(
            (e) => e.children.length === 0 && e.textContent.trim() === name);
        for (let el = title; el; el = el.parentElement) {
            const titles = [...el.querySelectorAll('*')].filter((e) => e.children.length === 0)
                .map((e) => e.textContent.trim());
            if (names.some((n) => n !== name && titles.includes(n))) return null;
            const imgs = [...el.querySelectorAll('img')];
            if (imgs.length) return imgs;
        }
        return null;
    }"""
    for name in names:  # cards load their picture when they come into view (and may unload it after)
        browser.eval(find, [name, False])
        # wait for this card's own picture, loaded or failed (never for a time: under load a card may be measured
        # before its picture is there); a broken picture shows as width 0 and its status says why
        loaded = f"(a) => {{ const imgs = ({card})(a); return imgs && imgs.every((i) => i.complete); }}"
        browser.page.wait_for_function(loaded, arg=[name, names], polling=250, timeout=60_000)
        shown.update(browser.eval(f"(a) => Object.fromEntries(({card})(a).map((i) => [i.src, [i.naturalWidth, "
                                  "i.naturalHeight]]))", [name, names]))
    sizes = list(shown.values())
    fetched = {url.rsplit("/", 1)[-1]: status for url, status in browser.responses
               if f"/workflow_templates/{PACK}/" in url and url.endswith(".jpg")}
    browser.page.keyboard.press("Escape")
    browser.pump(0.5)
    return {"status": {name: fetched.get(f"{name}.jpg") for name in names}, "sizes": sorted(sizes)}


def choose_combo(browser: Browser, node_id: int, widget: str, value: str) -> None:
    """Pick ``value`` in a node's combo widget the way a user does: in the Vue node renderer by clicking its
    select and the option; on the litegraph canvas as its combo menu does (set the value, call the callback)."""
    row = browser.page.locator(f"[data-node-id='{node_id}'] [data-widget-name='{widget}']")
    if row.count():
        row.get_by_role("combobox").click()
        browser.page.get_by_role("option", name=value, exact=True).click()
    else:
        browser.eval("""([id, name, value]) => {
            const w = app.graph.getNodeById(id).widgets.find((w) => w.name === name);
            w.value = value; w.callback?.(value, app.canvas, app.graph.getNodeById(id));
        }""", [node_id, widget, value])
    browser.pump(0.3)


def widget_values(browser: Browser, node_id: int) -> dict:
    """{widget name: value} of a node, and in the Vue renderer also what its inputs show ({name: text})."""
    return browser.eval("""(id) => {
        const values = Object.fromEntries(app.graph.getNodeById(id).widgets.map((w) => [w.name, w.value]));
        const shown = {};
        for (const row of document.querySelectorAll(`[data-node-id="${id}"] [data-widget-name]`)) {
            const input = row.querySelector('input');
            shown[row.dataset.widgetName] = input ? input.value : row.textContent.trim();
        }
        return {values, shown};
    }""", node_id)


def fit_view(browser: Browser, scale: float = 1.0, margin: int = 30) -> dict:
    """Grow the window to hold the whole graph at ``scale`` (1 = the frontend's 100 % zoom) with the UI around the
    canvas hidden; returns the clip rectangle of the graph on the page."""
    if not browser.eval("() => document.body.classList.contains('vmdiff-shot')"):  # hide the UI once
        browser.eval("() => { app.extensionManager.command.execute('Workspace.ToggleFocusMode'); "
                     "document.body.classList.add('vmdiff-shot'); }")
    boxes = browser.eval(BOXES_JS)
    x0, y0 = min(b["box"][0] for b in boxes), min(b["box"][1] for b in boxes)
    x1, y1 = max(b["box"][2] for b in boxes), max(b["box"][3] for b in boxes)
    width, height = int((x1 - x0) * scale) + 2 * margin, int((y1 - y0) * scale) + 2 * margin
    browser.page.set_viewport_size({"width": width + 400, "height": height + 300})
    browser.pump(1.0)
    left, top = browser.eval(f"""() => {{
        const ds = app.canvas.ds; ds.scale = {scale};
        ds.offset = [{margin / scale} - {x0}, {margin / scale} - {y0}];
        app.canvas.setDirty(true, true); app.canvas.draw(true, true);
        const r = app.canvas.canvas.getBoundingClientRect(); return [r.left, r.top];
    }}""")
    browser.pump(1.5)  # the Vue renderer re-lays its DOM nodes after the transform changes
    return {"x": left, "y": top, "width": width, "height": height}


def screenshot_graph(browser: Browser, path: Path, scale: float = 1.0) -> Path:
    """A PNG (or .jpg) of the loaded graph alone at ``scale``."""
    return browser.screenshot(path, **fit_view(browser, scale))


def write_thumbnail(browser: Browser, path: Path, width: int = 640) -> Path:
    """The template browser's picture of the loaded workflow: the graph at 70 % zoom, resized to ``width``."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        shot = screenshot_graph(browser, Path(tmp) / "graph.png", scale=0.7)
        with Image.open(shot) as im:
            im = im.convert("RGB")
            im.thumbnail((width, width * 3 // 4), Image.LANCZOS)
            im.save(path, quality=82, optimize=True)
    return path


def main(argv=None) -> int:
    from vmdiff_cli.comfy_server import ComfyClient, ComfyServer

    ap = argparse.ArgumentParser(description="Open workflows in ComfyUI's real frontend (headless Chromium).",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("workflows", nargs="*", type=Path, help="UI-format workflow JSON (default: workflows/*.json)")
    ap.add_argument("--server", help="a running ComfyUI that serves its frontend (default: start a model-less one)")
    ap.add_argument("--frontend-version", help=f"serve this comfyui-frontend-package (e.g. {LATEST_FRONTEND}) with "
                                               "--front-end-root instead of the one ComfyUI pins")
    ap.add_argument("--vue", action="store_true", help="enable the Vue node renderer (Comfy.VueNodes.Enabled)")
    ap.add_argument("--screenshot", type=Path, help="PNG of the first workflow's full graph")
    ap.add_argument("--missing-models", type=Path, help="PNG of the page with the first workflow's Missing Models "
                                                        "list open (newer frontends' Issues panel: --frontend-version)")
    ap.add_argument("--thumbnails", action="store_true",
                    help="write each workflow's template-browser thumbnail beside it (<name>.jpg)")
    ap.add_argument("--size", default="1600x1000", help="browser window WIDTHxHEIGHT")
    ap.add_argument("--locale", help="the frontend's language (Comfy.Locale: en, zh, zh-TW, ja, ko, fr, de, ...)")
    args = ap.parse_args(argv)
    paths = args.workflows or sorted((REPO_ROOT / "workflows").glob("*.json"))
    width, height = (int(v) for v in args.size.split("x"))
    extra = ["--front-end-root", str(frontend_root(args.frontend_version))] if args.frontend_version else []
    failed = False
    # --server: that server is not ours to stop
    serving = nullcontext(ComfyClient(args.server)) if args.server else ComfyServer(None, frontend=True,
                                                                                    extra_args=extra)
    with serving as server:
        prepare_server(server, vue=args.vue)
        if args.locale:
            server.http.post(server.url + "/api/settings/Comfy.Locale", json=args.locale, timeout=30).raise_for_status()
        with Browser(width, height) as browser:
            page = [p for p in open_frontend(browser, server.url) if not is_fresh_install_noise(p)]
            if page:
                print("page load problems:", *page, sep="\n  ")
                failed = True
            for i, path in enumerate(paths):
                workflow = json.loads(path.read_text())
                seen = load_workflow(browser, workflow, path.stem)
                seen["problems"] = [p for p in seen["problems"] if not is_offline_noise(p)]
                crossed = overlaps(seen["boxes"])
                bad = seen["missing_nodes"] or seen["problems"] or crossed
                failed |= bool(bad)
                print(f"{'FAIL' if bad else 'ok  '} {path.stem}: {seen['nodes']} nodes, {seen['links']} links, "
                      f"missing node types {seen['missing_nodes']}, {len(seen['missing_models'])} model(s) to "
                      f"download, overlapping nodes {crossed}, problems {seen['problems']}")
                if i == 0 and args.missing_models:
                    rows = missing_models_panel(browser, close=False)
                    print("Missing Models list:", *(f"{r['name']}: {r['label']}" for r in rows), sep="\n  ")
                    print("screenshot:", browser.screenshot(args.missing_models))
                if i == 0 and args.screenshot:
                    print("screenshot:", screenshot_graph(browser, args.screenshot))
                if args.thumbnails:
                    print("thumbnail:", write_thumbnail(browser, path.with_suffix(".jpg")))
                    browser.page.set_viewport_size({"width": width, "height": height})
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
