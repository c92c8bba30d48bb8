"""The translations in ComfyUI's real frontends (headless Chromium, scripts/frontend_check.py): with the language set to
Chinese (Comfy.Locale zh), the manual workflow's VMDiff nodes show their titles, widget labels, input and output names
from locales/zh/main.json, on the pinned frontend (1.35.9, litegraph canvas) and the newest checked here (1.58.1,
Vue node renderer, where the nodes are also read as drawn on the page; a newer frontend served by the 0.8.0 backend,
not what users run). Back in English the same nodes show the schemas' own text."""
import json
from pathlib import Path

import pytest

from scripts.frontend_check import LATEST_FRONTEND, Browser, frontend_root, load_workflow, open_frontend, prepare_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
FRONTENDS = {"pinned-litegraph": (None, False), f"newest-{LATEST_FRONTEND}-vue": (LATEST_FRONTEND, True)}
MANUAL = json.loads((REPO / "workflows" / "vmdiff_manual.json").read_text())

SHOWN_JS = """() => app.graph.nodes.filter((n) => n.type.startsWith('VMDiff')).map((n) => ({
    type: n.type, title: n.title,
    widgets: Object.fromEntries((n.widgets ?? []).map((w) => [w.name, w.label ?? w.name])),
    inputs: Object.fromEntries((n.inputs ?? []).map((i) => [i.name, i.label ?? i.localized_name ?? i.name])),
    outputs: (n.outputs ?? []).map((o) => o.label ?? o.localized_name ?? o.name),
    dom: document.querySelector(`[data-node-id="${n.id}"]`)?.innerText ?? null}))"""


def expected_text(lang: str) -> dict:
    return json.loads((REPO / "locales" / lang / "main.json").read_text(encoding="utf-8"))["nodeDefs"]


def unescape(text: str) -> str:
    for char in "{}@|$":
        text = text.replace("{'" + char + "'}", char)
    return text


@pytest.fixture(scope="module", params=list(FRONTENDS))
def server(request, comfy_server_factory):
    version, vue = FRONTENDS[request.param]
    extra = ["--front-end-root", str(frontend_root(version))] if version else []
    srv = comfy_server_factory(frontend=True, extra_args=extra)
    prepare_server(srv, vue=vue)
    yield srv, vue
    srv.http.post(srv.url + "/api/settings/Comfy.Locale", json="en", timeout=30)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_manual_workflow_shows_the_pack_in_the_chosen_language(server, lang):
    srv, vue = server
    srv.http.post(srv.url + "/api/settings/Comfy.Locale", json=lang, timeout=30).raise_for_status()
    with Browser(1600, 1000) as browser:
        open_frontend(browser, srv.url)
        assert browser.eval("() => app.ui.settings.getSettingValue('Comfy.Locale')") == lang
        load_workflow(browser, MANUAL, "vmdiff_manual")
        browser.pump(1.0)
        shown = browser.eval(SHOWN_JS)
    want = expected_text(lang)
    assert {n["type"] for n in shown} == {"VMDiffReduxEncode", "VMDiffFusionPrompt", "VMDiffBlendingNoise",
                                          "VMDiffMixingDenoise"}
    for node in shown:
        entry = want[node["type"]]
        assert node["title"] == unescape(entry["display_name"])
        for name, label in node["widgets"].items():
            if name in entry["inputs"]:
                assert label == unescape(entry["inputs"][name]["name"]), (node["type"], name)
        for name, label in node["inputs"].items():
            assert label == unescape(entry["inputs"][name]["name"]), (node["type"], name)
        assert node["outputs"] == [unescape(o["name"]) for o in entry["outputs"].values()]
        if vue:  # as drawn: the Vue renderer's node element carries the translated title and widget labels
            assert unescape(entry["display_name"]) in node["dom"]
            for name in node["widgets"]:
                if name in entry["inputs"]:
                    assert unescape(entry["inputs"][name]["name"]) in node["dom"], (node["type"], name)
    if lang == "zh":  # a few by eye: the translation, not the English schema text
        titles = {n["type"]: n["title"] for n in shown}
        assert titles["VMDiffMixingDenoise"] == "VMDiff 混合去噪"
        assert titles["VMDiffBlendingNoise"] == "VMDiff 混合噪声"
        mix = next(n for n in shown if n["type"] == "VMDiffMixingDenoise")
        assert mix["widgets"]["alpha"] == "α" and mix["widgets"]["steps"] == "步数"
