"""Every shipped workflow opens in ComfyUI's real frontend (headless Chromium, tools/frontend_check.py) with zero
missing node types and zero console errors, and each loader's properties.models makes the frontend's Missing Models
dialog offer a download; a copy naming a node type the pack does not register is reported as missing."""
import json
from pathlib import Path

import pytest

from tools.frontend_check import Browser, is_fresh_install_noise, load_workflow, open_frontend, prepare_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = {p.stem: json.loads(p.read_text()) for p in sorted((REPO / "workflows").glob("*.json"))}
LOADERS = {"UNETLoader", "CLIPLoader", "DualCLIPLoader", "CLIPVisionLoader", "StyleModelLoader", "VAELoader",
           "CheckpointLoaderSimple"}
# what the Missing Models dialog of this frontend accepts for a download (MissingModelsWarning)
DOWNLOAD_SOURCES, DOWNLOAD_SUFFIXES = ("https://huggingface.co/", "https://civitai.com/"), (".safetensors", ".sft")


@pytest.fixture(scope="module")
def page(comfy_server_factory, tmp_path_factory):
    server = comfy_server_factory(frontend=True)  # model-less: every model is "missing", which is what we check
    prepare_server(server, list(WORKFLOWS.values()), tmp_path_factory.mktemp("frontend_inputs"))
    with Browser(1600, 1000) as browser:
        page_problems = open_frontend(browser, server.url)
        yield server, browser, page_problems


def test_the_page_loads_with_only_fresh_install_404s(page):
    _, browser, page_problems = page
    assert [p for p in page_problems if not is_fresh_install_noise(p)] == []
    assert browser.eval("'VMDiffMixingDenoise' in LiteGraph.registered_node_types")


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_opens_without_missing_nodes_or_console_errors(page, name):
    _, browser, _ = page
    workflow = WORKFLOWS[name]
    seen = load_workflow(browser, workflow, name)
    assert seen["missing_nodes"] == []
    assert seen["problems"] == []
    assert seen["nodes"] == len(workflow["nodes"]) and seen["links"] == len(workflow["links"])
    assert sorted(seen["types"]) == sorted(n["type"] for n in workflow["nodes"])
    # every model the loaders name is offered for download by the frontend's Missing Models dialog
    declared = {(m["name"], m["directory"], m["url"]) for n in workflow["nodes"]
                for m in n["properties"].get("models", [])}
    offered = {(m["name"], m["directory"], m["url"]) for m in seen["missing_models"]}
    assert offered == declared
    for name_, directory, url in offered:
        assert directory in seen["model_folders"] and url.startswith(DOWNLOAD_SOURCES) and url.endswith(name_)
        assert name_.endswith(DOWNLOAD_SUFFIXES)
    for node in workflow["nodes"]:
        if node["type"] in LOADERS:
            files = {v for v in node["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")}
            assert files == {m["name"] for m in node["properties"]["models"]}, node["type"]


def test_a_node_type_the_pack_does_not_register_is_reported(page):
    _, browser, _ = page
    broken = json.loads(json.dumps(WORKFLOWS["vmdiff_manual"]))
    mix = next(n for n in broken["nodes"] if n["type"] == "VMDiffMixingDenoise")
    mix["type"] = "VMDiffMixingDenoiseRenamed"
    seen = load_workflow(browser, broken, "broken")
    assert seen["missing_nodes"] == ["VMDiffMixingDenoiseRenamed"]


def test_the_template_browser_lists_the_pack_workflows(page):
    server, _, _ = page
    templates = server.get("/api/workflow_templates").json()
    assert sorted(templates["comfyui-vmdiff"]) == sorted(WORKFLOWS)  # workflows/*.json; the API twins stay out
    served = server.get("/api/workflow_templates/comfyui-vmdiff/vmdiff_manual.json").json()
    assert served == WORKFLOWS["vmdiff_manual"]


def test_choosing_an_auto_tune_preset_sets_its_search_widgets(page):
    server, browser, _ = page
    from dataclasses import asdict

    from vmdiff_pack.vmdiff_ops import PRESETS

    served = server.get("/vmdiff/presets").json()
    for name, options in PRESETS.items():  # the search widgets of each preset, from the one table
        assert served[name] == {**{k: v for k, v in asdict(options).items() if k in served[name]},
                                "mix_rule": served[name]["mix_rule"]}
        assert {"alpha_min", "alpha_tol", "beta_stronger", "threshold", "rounds"} <= set(served[name])
    assert (served["paper"]["rounds"], served["paper"]["beta_stronger"], served["paper"]["mix_rule"]) == (3, 1.0,
                                                                                                          "slerp")
    assert load_workflow(browser, WORKFLOWS["vmdiff_full"], "vmdiff_full")["problems"] == []
    choose = """(async (name) => {
        const node = app.graph.nodes.find((n) => n.comfyClass === "VMDiffAutoTune");
        const preset = node.widgets.find((w) => w.name === "preset");
        preset.value = name;
        preset.callback(name);
        await node.vmdiffPresetApplied;
        return Object.fromEntries(node.widgets.map((w) => [w.name, w.value]));
    })"""
    paper = browser.eval(f"{choose}('paper')")
    assert {k: paper[k] for k in served["paper"]} == served["paper"] and paper["preset"] == "paper"
    official = browser.eval(f"{choose}('official')")
    assert {k: official[k] for k in served["official"]} == served["official"]
    paper["alpha_tol"] = 0.05  # custom: the widgets stay as they are
    browser.eval("""(() => {
        const node = app.graph.nodes.find((n) => n.comfyClass === "VMDiffAutoTune");
        node.widgets.find((w) => w.name === "alpha_tol").value = 0.05;
    })()""")
    custom = browser.eval(f"{choose}('custom')")
    assert custom["alpha_tol"] == 0.05 and custom["rounds"] == official["rounds"]
