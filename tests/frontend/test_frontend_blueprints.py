"""The subgraph blueprints in ComfyUI's real frontends (headless Chromium, scripts/frontend_check.py), both the one
0.8.0 pins (1.35.9, litegraph canvas) and the newest checked here (1.58.1, Vue node renderer; served by the 0.8.0
backend with --front-end-root: a newer frontend on an older backend, not what users run):

- each lists the three blueprints among its node definitions (what its node library and search show) with their
  description and inputs, and shows them in its node library;
- a blueprint dropped into a graph of the loaders (the frontend's own add-blueprint path), linked to them, gives the
  prompt the frontend would queue (``app.graphToPrompt``) that equals the expanded workflow's, and queued through
  the real server on the stand-in models the same image, bit for bit (the Redux "VMDiff Fuse" and "VMDiff FLUX.2
  Fuse", its FLUX.2 files swapped for the FLUX.2 stand-ins as the shipped FLUX.2 workflow's server test does).
"""
import json

import numpy as np
import pytest
from PIL import Image

from tests.support.reference_stand_ins import REFERENCE_STAND_INS, reference_stand_ins
from tests.support.tiny_folders import on_tiny_loaders
from tests.support.workflows import drop_cached_outputs, shrink
from tests.server.test_blueprints import canonical
from scripts import build_blueprints as bb
from scripts.frontend_check import (LATEST_FRONTEND, STORES_JS, Browser, frontend_root, is_fresh_install_noise,
                                  open_frontend, prepare_server)
from vmdiff_cli.run_workflow import apply_inputs
from vmdiff_cli.workflow_convert import ui_to_api

pytestmark = pytest.mark.slow
FRONTENDS = {"pinned-litegraph": (None, False), f"newest-{LATEST_FRONTEND}-vue": (LATEST_FRONTEND, True)}
NAMES = [bp.name for bp in bb.BLUEPRINTS]
#: what the bit-for-bit run sets on both prompts (the blueprint's and its expanded workflow's): size, seed, steps
RUN = {**shrink("VMDiffBlendingNoise", "VMDiffMixingDenoise", VMDiffBlendingNoise={"seed": 4242}),
       **REFERENCE_STAND_INS}
#: each blueprint's models → the stand-ins: the Redux loaders → the tiny loaders, the FLUX.2 files → the tiny FLUX.2
STAND_INS = {"VMDiff Fuse": on_tiny_loaders, "VMDiff FLUX.2 Fuse": reference_stand_ins}
LISTED_JS = ("() => (" + STORES_JS + ").get('nodeDef').nodeDefs.filter("
             f"(d) => d.name.startsWith('SubgraphBlueprint.')).length >= {len(NAMES)}")

BLUEPRINT_DEFS_JS = """() => (""" + STORES_JS + """).get('nodeDef').nodeDefs
    .filter((d) => d.name.startsWith('SubgraphBlueprint.'))
    .map((d) => ({name: d.name, display_name: d.display_name, category: d.category, description: d.description,
                  inputs: Object.keys(d.inputs), outputs: (d.outputs ?? []).map((o) => o.name),
                  essentials_category: d.essentials_category ?? null, search_aliases: d.search_aliases ?? null}))"""

#: Open ``outer`` (the loaders, images and savers), add the blueprint the way the frontend's node library does
#: (litegraphService.addNodeOnGraph: subgraphStore.getBlueprint + canvas._deserializeItems), link it, queue-build.
DROP_JS = """async ([outer, display, inLinks, outLinks]) => {
    await app.loadGraphData(outer, true, true, 'blueprint drop');
    const stores = """ + STORES_JS + """;
    const def = stores.get('nodeDef').nodeDefs.find(
        (d) => d.name.startsWith('SubgraphBlueprint.') && d.display_name === display);
    const bp = stores.get('subgraph').getBlueprint(def.name);
    const added = app.canvas._deserializeItems({nodes: bp.nodes, subgraphs: bp.definitions?.subgraphs},
                                               {position: [800, 0]});
    const node = added.nodes.values().next().value;
    for (const [src, slot, name] of inLinks) {
        app.graph.getNodeById(src).connect(slot, node, node.inputs.findIndex((i) => i.name === name));
    }
    for (const [name, dst, slot] of outLinks) {
        node.connect(node.outputs.findIndex((o) => o.name === name), app.graph.getNodeById(dst), slot);
    }
    await new Promise((r) => setTimeout(r, 300));
    const prompt = await app.graphToPrompt();
    return {output: prompt.output, type: node.type, is_subgraph: Boolean(node.subgraph),
            widgets: Object.fromEntries((node.widgets ?? []).map((w) => [w.name, w.value])),
            inputs: node.inputs.map((i) => i.name), outputs: node.outputs.map((o) => o.name)};
}"""


@pytest.fixture(scope="module")
def classes():
    from scripts.build_workflows import node_definitions

    return node_definitions()


@pytest.fixture(scope="module", params=list(FRONTENDS))
def page(request, comfy_server_factory, classes):  # classes first: ComfyUI boots outside the browser loop
    version, vue = FRONTENDS[request.param]
    extra = ["--front-end-root", str(frontend_root(version))] if version else []
    server = comfy_server_factory(frontend=True, extra_args=extra)
    prepare_server(server, vue=vue)
    with Browser(1600, 1000) as browser:
        problems = [p for p in open_frontend(browser, server.url) if not is_fresh_install_noise(p)]
        browser.wait_for(LISTED_JS, 60)
        yield server, browser, problems, version


def split_placed(bp, classes) -> tuple[dict, list, list]:
    """The placed workflow without its blueprint node: (the outside graph, [(source node, slot, blueprint input)],
    [(blueprint output, target node, slot)])."""
    _, placed = bb.build(bp, classes)
    node = placed["nodes"][-1]
    assert node["type"] == bp.subgraph_id
    ins = [(link[1], link[2], node["inputs"][link[4]]["name"]) for link in placed["links"] if link[3] == node["id"]]
    outs = [(node["outputs"][link[2]]["name"], link[3], link[4]) for link in placed["links"] if link[1] == node["id"]]
    outer = json.loads(json.dumps(placed))
    outer["nodes"] = outer["nodes"][:-1]
    dropped = {link[0] for link in outer["links"] if node["id"] in (link[1], link[3])}
    outer["links"] = [link for link in outer["links"] if link[0] not in dropped]
    for n in outer["nodes"]:
        for i in n["inputs"]:
            if i.get("link") in dropped:
                i["link"] = None
        for o in n["outputs"]:
            o["links"] = [lid for lid in o["links"] if lid not in dropped]
    del outer["definitions"]
    return outer, ins, outs


def frontend_prompt(browser, bp, classes) -> dict:
    outer, ins, outs = split_placed(bp, classes)
    seen = browser.eval(DROP_JS, [outer, bp.name, ins, outs])
    assert seen["is_subgraph"] and seen["inputs"][:len(bp.sockets)] == list(bp.sockets)
    assert seen["outputs"] == list(bp.outputs)
    return seen


def test_both_frontends_list_the_blueprints(page):
    _, browser, problems, version = page
    assert problems == [] or version  # the newest frontend on the old backend: its known noise (test_frontend.py)
    defs = {d["display_name"]: d for d in browser.eval(BLUEPRINT_DEFS_JS)}
    for bp in bb.BLUEPRINTS:
        d = defs[bp.name]
        assert d["description"] == bp.description
        assert d["inputs"] == [*bp.sockets, *bp.exposed] and d["outputs"] == list(bp.outputs)
        # 1.58.1 files the blueprint under its definition's category; 1.35.9 under "Subgraph Blueprints"
        assert d["category"] == ("Subgraph Blueprints/VMDiff" if version else "Subgraph Blueprints")
        # 1.58.1 also takes the Essentials section from the definition; its search aliases it takes from the
        # backend's listing (newer ComfyUI), which 0.8.0 does not send: none here, on either frontend
        assert d["essentials_category"] == ("generate-image" if version else None)
        assert d["search_aliases"] is None


def test_the_node_library_shows_the_blueprints(page):
    _, browser, _, version = page
    browser.eval("() => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library')")
    browser.pump(1.5)
    search = browser.page.locator(".node-lib-search-box input, [data-testid=node-library-search] input, "
                                  ".p-iconfield input, input[type=text]").first
    search.fill("VMDiff Fuse")
    browser.pump(2.0)
    text = browser.eval("() => document.body.innerText")
    for name in NAMES:
        assert name in text, (name, version)
    browser.eval("() => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library')")
    browser.pump(0.5)


@pytest.mark.parametrize("name", NAMES)
def test_a_dropped_blueprint_queues_the_expanded_workflow(page, classes, name):
    """What the frontend queues for the blueprint node linked to the loaders equals, node for node, what it queues
    for the workflow the blueprint stands for; its widgets on the outside carry the user's settings."""
    server, browser, _, _ = page
    bp = next(b for b in bb.BLUEPRINTS if b.name == name)
    seen = frontend_prompt(browser, bp, classes)
    assert {k: seen["widgets"][k] for k in bp.exposed} == {k: bb._widget_value(bp, k, classes) for k in bp.exposed}
    expected = ui_to_api(bb.expanded_workflow(bp, classes), server.object_info())
    assert canonical(seen["output"]) == canonical(expected)


@pytest.mark.parametrize("page", ["pinned-litegraph"], indirect=True)  # the open page: one Playwright a thread
@pytest.mark.parametrize("name", list(STAND_INS))
def test_the_dropped_blueprint_runs_and_equals_the_expanded_workflow_bit_for_bit(page, classes, vmdiff_server,
                                                                                  object_images, name):
    """The prompt the pinned frontend builds for the dropped blueprint, queued through the real server on the
    stand-in models, saves the same pixels as the workflow it stands for (same seed, labels, α, steps): the manual
    workflow on the tiny Redux-path loaders, the FLUX.2 one on the tiny FLUX.2 loaders."""
    _, browser, _, _ = page
    bp = next(b for b in bb.BLUEPRINTS if b.name == name)
    from_frontend = frontend_prompt(browser, bp, classes)["output"]
    expanded = ui_to_api(bb.expanded_workflow(bp, classes), vmdiff_server.object_info())
    images = [run_on_stand_ins(vmdiff_server, STAND_INS[name](prompt), object_images, f"blueprint_check_{i}")
              for i, prompt in enumerate((from_frontend, expanded))]
    assert images[0].shape == (32, 32, 3) and images[0].std() > 1.0
    assert np.array_equal(images[0], images[1])


def run_on_stand_ins(server, prompt: dict, object_images, prefix: str) -> np.ndarray:
    """``prompt`` (its models already on stand-ins) at the small size, seed and steps of ``RUN``, every node
    computed afresh, saved under ``prefix``: its one image."""
    apply_inputs(prompt, list(object_images), ["owl", "jar"], [], RUN)
    for node in prompt.values():  # our own prefix: the two runs' files told apart
        if node["class_type"] == "SaveImage":
            node["inputs"]["filename_prefix"] = prefix
    drop_cached_outputs(server)  # each run computes every node (no cached output shared between them)
    entry = server.run(prompt, timeout=600)
    assert not [m for m in entry["status"]["messages"] if m[0] == "execution_cached" and m[1]["nodes"]]
    (path,) = [p for p in server.output_images(entry) if prefix in p.name]
    return np.asarray(Image.open(path).convert("RGB"))
