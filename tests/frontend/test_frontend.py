"""Every shipped workflow opens in ComfyUI's real frontend (headless Chromium via Playwright, scripts/frontend_check.py)
on two frontends: the one ComfyUI 0.8.0 pins (litegraph canvas) and the newest comfyui-frontend-package checked here
served with --front-end-root and the Vue node renderer ("Nodes 2.0") on. In both: zero missing node types, zero
console errors, no node overlapping another, the pack's example photos in place, the template browser showing each
workflow's thumbnail, every model file a loader names offered for download by the frontend's Missing Models list
(on the newest frontend: the Issues panel, read as shown, each Download button opening the declared URL), and choosing
an Auto-Tune preset (the way a user does) setting its search widgets."""
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from vmdiff_cli.model_downloads import MODEL_DOWNLOADS
from scripts.frontend_check import (LATEST_FRONTEND, Browser, choose_combo, frontend_root, is_fresh_install_noise,
                                  is_offline_noise, load_workflow, missing_models_panel, open_frontend, overlaps,
                                  prepare_server, template_thumbnails, widget_values)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = {p.stem: json.loads(p.read_text()) for p in sorted((REPO / "workflows").glob("*.json"))}
LOADERS = {"UNETLoader", "CLIPLoader", "DualCLIPLoader", "CLIPVisionLoader", "StyleModelLoader", "VAELoader",
           "CheckpointLoaderSimple"}
# what the Missing Models dialog of the pinned frontend accepts for a download (MissingModelsWarning)
DOWNLOAD_SOURCES, DOWNLOAD_SUFFIXES = ("https://huggingface.co/", "https://civitai.com/"), (".safetensors", ".sft")
# the newest frontend on ComfyUI 0.8.0's backend, whatever the workflow: its jobs API is newer than the backend's
# (400), and its first-run default graph asks huggingface.co for model sizes (blocked: offline server)
NEWER_FRONTEND_ON_OLD_BACKEND = ("/api/jobs?", "[Jobs API]", "huggingface.co/Comfy-Org/z_image_turbo/")
#: huggingface.co as the offline test answers it (Browser(model_sizes=...)): model file URL -> size, k GiB for the
#: k-th model, so the size each row of the newest frontend's list shows ("k GB") names the URL it asked about
MODEL_SIZES = {url: (k + 1) * 2**30 for k, (_, url) in enumerate(MODEL_DOWNLOADS.values())}
FRONTENDS = {"pinned-litegraph": (None, False), f"newest-{LATEST_FRONTEND}-vue": (LATEST_FRONTEND, True)}


def noise_free(problems: list[str], version) -> list[str]:
    """The page's problems minus what an offline ComfyUI 0.8.0 backend causes whatever the workflow (they may
    arrive late, while the next workflow loads)."""
    return [p for p in problems if not is_offline_noise(p)
            and not (version and any(k in p for k in NEWER_FRONTEND_ON_OLD_BACKEND))]


@pytest.fixture(scope="module", params=list(FRONTENDS))
def page(request, comfy_server_factory):
    version, vue = FRONTENDS[request.param]
    extra = ["--front-end-root", str(frontend_root(version))] if version else []
    server = comfy_server_factory(frontend=True, extra_args=extra)  # model-less: every model is "missing"
    prepare_server(server, vue=vue)
    # the newest frontend asks huggingface.co for each missing model's size: answered here (the machine is offline)
    with Browser(1600, 1000, model_sizes=MODEL_SIZES if version else None) as browser:
        page_problems = open_frontend(browser, server.url)
        yield server, browser, page_problems, version, vue


def test_the_page_loads_with_only_known_noise(page):
    _, browser, page_problems, version, vue = page
    assert [p for p in noise_free(page_problems, version) if not is_fresh_install_noise(p)] == []
    assert browser.eval("() => 'VMDiffMixingDenoise' in LiteGraph.registered_node_types")
    assert browser.eval("() => app.ui.settings.getSettingValue('Comfy.VueNodes.Enabled') ?? false") == vue


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_opens_clean_with_no_overlaps(page, name):
    server, browser, _, version, vue = page
    workflow = WORKFLOWS[name]
    seen = load_workflow(browser, workflow, name)
    assert seen["missing_nodes"] == []
    assert noise_free(seen["problems"], version) == []
    assert seen["nodes"] == len(workflow["nodes"]) and seen["links"] == len(workflow["links"])
    assert sorted(seen["types"]) == sorted(n["type"] for n in workflow["nodes"])
    assert {b["vue"] for b in seen["boxes"]} == {vue}  # the boxes come from the renderer under test
    assert overlaps(seen["boxes"]) == []
    # the photos the LoadImage nodes name are in the input folder (copied there when the pack loaded)
    for node in workflow["nodes"]:
        if node["type"] == "LoadImage":
            server.get("/view", params={"filename": node["widgets_values"][0], "type": "input"})
    assert_models_offered_for_download(browser, workflow, seen, version, panel=name in PANEL_CHECKED)


#: the workflows whose Issues panel the newest frontend's test opens and clicks through (5–9 s each; the list behind
#: it, the missingModel store, is checked for every workflow)
PANEL_CHECKED = {"vmdiff_manual", "vmdiff_full"}


def assert_models_offered_for_download(browser, workflow: dict, seen: dict, version, panel: bool = True) -> None:
    """Every model the loaders name is offered for download by the frontend's Missing Models list, as declared;
    ``panel``: on the newest frontend, also as its Issues panel shows it (rows, sizes, Download opening the URL)."""
    declared = {(m["name"], m["directory"], m["url"]) for n in workflow["nodes"]
                for m in n["properties"].get("models", [])}
    # the list the frontend built: the pinned one hands it to app.showMissingModelsError (its dialog), the newest
    # keeps it in its missingModel store (its Issues panel)
    assert seen["missing_models_from"] == ("missingModel store" if version else "app.showMissingModelsError")
    offered = {(m["name"], m["directory"], m["url"]) for m in seen["missing_models"]}
    assert offered == declared
    # both frontends offer a download only from these hosts and for these suffixes (the newest also allows
    # civitai.red and .ckpt/.pth/.pt: the pinned lists are the stricter, kept for both)
    for name_, directory, url in offered:
        assert directory in seen["model_folders"] and url.startswith(DOWNLOAD_SOURCES) and url.endswith(name_), url
        assert name_.endswith(DOWNLOAD_SUFFIXES)
    for node in workflow["nodes"]:
        if node["type"] in LOADERS:
            files = {v for v in node["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")}
            assert files == {m["name"] for m in node["properties"]["models"]}, node["type"]
            # the folder declared is the one the frontend itself files this loader's models under (where it knows
            # the loader: the pinned frontend has no folder for CLIPLoader)
            if seen["loader_folders"][node["type"]] is not None:
                assert {m["directory"] for m in node["properties"]["models"]} == {seen["loader_folders"][node["type"]]}
    nodes_naming = Counter(m["name"] for n in workflow["nodes"] for m in n["properties"].get("models", []))
    if version and panel:  # the newest frontend's Issues panel, as a user sees it: one row per model, its folder
        # and the size huggingface.co gave for its URL, a Download button that opens that URL
        rows = missing_models_panel(browser, download=True)
        shown = {(r["name"], r["label"], r["download"], r.get("url"), r["nodes"]) for r in rows}
        assert shown == {(name_, f"{directory} · {MODEL_SIZES[url] // 2**30} GB", True, url, nodes_naming[name_])
                         for name_, directory, url in declared}


BROKEN_DECLARATIONS = {  # one model's declaration broken in memory, each a way a download offer goes wrong
    "url on another host": ("ae.safetensors", "url", "https://example.com/ae.safetensors"),
    "url of another file": ("ae.safetensors", "url", MODEL_DOWNLOADS["clip_l.safetensors"][1]),
    "wrong model folder": ("ae.safetensors", "directory", "checkpoints"),
}


@pytest.mark.parametrize("fault", sorted(BROKEN_DECLARATIONS))
def test_a_broken_model_declaration_fails_the_download_check(page, fault):
    _, browser, _, version, _ = page
    model, key, value = BROKEN_DECLARATIONS[fault]
    broken = json.loads(json.dumps(WORKFLOWS["vmdiff_manual"]))
    entry = next(m for n in broken["nodes"] for m in n["properties"].get("models", []) if m["name"] == model)
    entry[key] = value
    seen = load_workflow(browser, broken, "vmdiff_manual")
    with pytest.raises(AssertionError, match=re.escape(value)):  # the list alone already shows each fault
        assert_models_offered_for_download(browser, broken, seen, version, panel=False)
    # (the same workflow as built passes the same check: test_workflow_opens_clean_with_no_overlaps[vmdiff_manual])


def test_a_node_type_the_pack_does_not_register_is_reported(page):
    _, browser, _, _, _ = page
    broken = json.loads(json.dumps(WORKFLOWS["vmdiff_manual"]))
    mix = next(n for n in broken["nodes"] if n["type"] == "VMDiffMixingDenoise")
    mix["type"] = "VMDiffMixingDenoiseRenamed"
    seen = load_workflow(browser, broken, "broken")
    assert seen["missing_nodes"] == ["VMDiffMixingDenoiseRenamed"]


def test_the_template_browser_shows_each_workflow_with_its_thumbnail(page):
    server, browser, _, _, _ = page
    templates = server.get("/api/workflow_templates").json()
    assert sorted(templates["comfyui-vmdiff"]) == sorted(WORKFLOWS)  # workflows/*.json; the API twins stay out
    served = server.get("/api/workflow_templates/comfyui-vmdiff/vmdiff_manual.json").json()
    assert served == WORKFLOWS["vmdiff_manual"]
    shown = template_thumbnails(browser, sorted(WORKFLOWS))
    # each card's picture is its workflow's own <name>.jpg, fetched from the pack and shown (not a placeholder)
    from PIL import Image

    assert shown["status"] == {n: 200 for n in WORKFLOWS}
    thumbnails = sorted(list(Image.open(REPO / "workflows" / f"{n}.jpg").size) for n in WORKFLOWS)
    assert {tuple(s) for s in thumbnails} <= {tuple(s) for s in shown["sizes"]}, shown["sizes"]


def test_choosing_an_auto_tune_preset_sets_its_search_widgets(page):
    server, browser, _, _, vue = page
    from dataclasses import asdict

    from vmdiff_pack.vmdiff_ops import PRESETS

    served = server.get("/vmdiff/presets").json()
    for name, options in PRESETS.items():  # the search widgets of each preset, from the one table
        assert served[name] == {**{k: v for k, v in asdict(options).items() if k in served[name]},
                                "mix_rule": served[name]["mix_rule"]}
        assert {"alpha_min", "alpha_tol", "beta_stronger", "threshold", "rounds"} <= set(served[name])
    assert (served["paper"]["rounds"], served["paper"]["beta_stronger"], served["paper"]["mix_rule"]) == (3, 1.0,
                                                                                                          "slerp")
    assert noise_free(load_workflow(browser, WORKFLOWS["vmdiff_full"], "vmdiff_full")["problems"], page[3]) == []
    node = browser.eval("() => app.graph.nodes.find((n) => n.comfyClass === 'VMDiffAutoTune').id")

    def choose(preset):
        choose_combo(browser, node, "preset", preset)
        browser.eval("(id) => app.graph.getNodeById(id).vmdiffPresetApplied", node)
        # wait for what the user sees: each number the preset sets, in its Vue widget row (none: litegraph canvas)
        browser.page.wait_for_function("""([id, wanted]) => Object.entries(wanted).every(([name, value]) => {
            const input = document.querySelector(`[data-node-id="${id}"] [data-widget-name="${name}"] input`);
            return !input || typeof value !== 'number'
                || Math.abs(Number(input.value) - value) <= 1e-6 * Math.abs(value);
        })""", arg=[node, served.get(preset, {})], polling=100, timeout=30_000)
        return widget_values(browser, node)

    paper = choose("paper")
    assert {k: paper["values"][k] for k in served["paper"]} == served["paper"]
    assert paper["values"]["preset"] == "paper"
    if vue:  # the Vue renderer shows what the extension wrote
        assert float(paper["shown"]["alpha_tol"]) == pytest.approx(served["paper"]["alpha_tol"])
        assert int(paper["shown"]["rounds"]) == served["paper"]["rounds"]
    official = choose("official")
    assert {k: official["values"][k] for k in served["official"]} == served["official"]
    browser.eval("(id) => { app.graph.getNodeById(id).widgets.find((w) => w.name === 'alpha_tol').value = 0.05; }",
                 node)
    custom = choose("custom")  # custom: the widgets stay as they are
    assert custom["values"]["alpha_tol"] == 0.05 and custom["values"]["rounds"] == official["values"]["rounds"]
