"""The subgraph blueprints (subgraphs/*.json): made from the workflows' one description (scripts/build_blueprints.py;
a drift fails), served by ComfyUI 0.8.0's /global_subgraphs, and each, expanded, the same prompt as the workflow
part it stands for. The frontends' side (listing, dropping, queuing, same image):
tests/frontend/test_frontend_blueprints.py."""
import json
from pathlib import Path

import pytest

from scripts import build_blueprints as bb
from scripts import build_workflows
from scripts.build_workflows import FLUX2

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def classes():
    return build_workflows.node_definitions()


def canonical(api: dict) -> list[str]:
    """An API prompt as a sorted list of node signatures, ids left out: each node's class, its plain inputs and, for
    a linked input, the signature of the node (and slot) it reads. Two prompts that compute the same are equal here
    whatever their node ids (the frontend numbers a subgraph's nodes "<outer>:<inner>") and however a number is
    written (JavaScript sends 5.0 as 5)."""
    memo: dict[str, str] = {}

    def sig(node_id: str) -> str:
        if node_id not in memo:
            node = api[node_id]
            inputs = {k: (["@", sig(str(v[0])), v[1]] if isinstance(v, list) and len(v) == 2 and str(v[0]) in api
                          else float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                      for k, v in sorted(node["inputs"].items())}
            memo[node_id] = json.dumps([node["class_type"], inputs], sort_keys=True, ensure_ascii=False)
        return memo[node_id]

    return sorted(sig(k) for k in api)


def test_shipped_blueprints_are_what_their_description_builds(classes):
    built = bb.build_all(classes)
    shipped = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "subgraphs").glob("*.json")}
    assert sorted(shipped) == sorted(built) == ["VMDiff Auto-Tune Fuse.json", "VMDiff FLUX.2 Fuse.json",
                                                "VMDiff Fuse.json"]
    for name, content in built.items():
        assert shipped[name] == bb.dump(content), f"{name} is stale: run scripts/build_blueprints.py"


@pytest.mark.parametrize("name", ["VMDiff Fuse", "VMDiff FLUX.2 Fuse"])
@pytest.mark.parametrize("change", ["a widget value inside", "a link inside", "an exposed input"])
def test_a_blueprint_that_drifts_from_its_description_is_caught(classes, change, name):
    """The check above fails when the description changes and the file does not (three kinds of change; on the
    Redux blueprint and on the FLUX.2 one, cut out of another workflow)."""
    import dataclasses

    fuse = next(b for b in bb.BLUEPRINTS if b.name == name)
    graph = dict(fuse.graph)
    if change == "a widget value inside":
        graph["mix"] = graph["mix"][:3] + ({**graph["mix"][3], "guidance": 3.5}, graph["mix"][4])
        changed = dataclasses.replace(fuse, graph=graph)
    elif change == "a link inside":
        graph["mix"] = graph["mix"][:3] + ({**graph["mix"][3], "tokens_2": ("@", "tokens_1", 0)}, graph["mix"][4])
        changed = dataclasses.replace(fuse, graph=graph)
    else:
        changed = dataclasses.replace(fuse, exposed={k: v for k, v in fuse.exposed.items() if k != "steps"})
    shipped = (REPO / "subgraphs" / fuse.file_name).read_text(encoding="utf-8")
    assert bb.dump(bb.build(fuse, classes)[0]) == shipped
    assert bb.dump(bb.build(changed, classes)[0]) != shipped


def test_the_user_sets_alpha_seed_labels_and_steps_outside_the_rest_inside(classes):
    for bp in bb.BLUEPRINTS:
        content = json.loads((REPO / "subgraphs" / bp.file_name).read_text(encoding="utf-8"))
        (node,) = content["nodes"]
        (definition,) = content["definitions"]["subgraphs"]
        assert node["type"] == definition["id"] and definition["name"] == bp.name
        widgets = [i["name"] for i in node["inputs"] if "widget" in i]
        assert {"seed", "steps", "label_1", "label_2"} <= set(widgets)
        assert ("alpha" in widgets) == (bp.name != "VMDiff Auto-Tune Fuse")  # Auto-Tune searches α itself
        assert ({"beta_1", "beta_2"} <= set(widgets)) == (bp.graph is FLUX2)  # β weighs the reference latents
        sockets = {i["name"]: i["type"] for i in node["inputs"] if "widget" not in i}
        # FLUX.2 reads the images as reference latents (its VAE): no CLIP vision, no style model
        redux = {} if bp.graph is FLUX2 else {"clip_vision": "CLIP_VISION", "style_model": "STYLE_MODEL"}
        assert {"model": "MODEL", "clip": "CLIP", **redux, "vae": "VAE", "image_1": "IMAGE",
                "image_2": "IMAGE"}.items() <= sockets.items()
        inner = sorted(n["type"] for n in definition["nodes"])
        assert "UNETLoader" not in inner and "LoadImage" not in inner and "SaveImage" not in inner
        # every inner link that comes from outside comes from the subgraph's input node, one slot per input
        for link in definition["links"]:
            if link["origin_id"] == bb.INPUT_NODE:
                assert link["id"] in definition["inputs"][link["origin_slot"]]["linkIds"]
        assert content["extra"]["BlueprintSearchAliases"][:3] == ["fuse", "blend", "mix objects"]
    fuse = json.loads((REPO / "subgraphs" / "VMDiff Fuse.json").read_text(encoding="utf-8"))
    assert sorted(n["type"] for n in fuse["definitions"]["subgraphs"][0]["nodes"]) == sorted([
        "VMDiffReduxEncode", "VMDiffReduxEncode", "VMDiffFusionPrompt", "VMDiffBlendingNoise", "VMDiffMixingDenoise",
        "VAEDecode"])
    flux2 = json.loads((REPO / "subgraphs" / "VMDiff FLUX.2 Fuse.json").read_text(encoding="utf-8"))
    assert sorted(n["type"] for n in flux2["definitions"]["subgraphs"][0]["nodes"]) == sorted([
        "ImageScaleToTotalPixels", "ImageScaleToTotalPixels", "VMDiffReferenceEncode", "VMDiffReferenceEncode",
        "VMDiffFusionPrompt", "VMDiffBlendingNoise", "VMDiffMixingDenoise", "VAEDecode"])
    auto = json.loads((REPO / "subgraphs" / "VMDiff Auto-Tune Fuse.json").read_text(encoding="utf-8"))
    assert [o["name"] for o in auto["definitions"]["subgraphs"][0]["outputs"]] == ["image", "params", "plot"]


def test_the_backend_serves_the_blueprints(comfy_server):
    """ComfyUI 0.8.0's /global_subgraphs lists all three under the pack, and /global_subgraphs/<id> returns each
    file."""
    listed = comfy_server.get("/global_subgraphs").json()
    ours = {v["name"]: k for k, v in listed.items() if v["info"]["node_pack"] == "custom_nodes.comfyui-vmdiff"}
    assert sorted(ours) == ["VMDiff Auto-Tune Fuse", "VMDiff FLUX.2 Fuse", "VMDiff Fuse"]
    for name, entry_id in ours.items():
        entry = comfy_server.get(f"/global_subgraphs/{entry_id}").json()
        assert entry["source"] == "custom_node" and "path" not in entry  # the server's own paths stay private
        assert json.loads(entry["data"]) == json.loads((REPO / "subgraphs" / f"{name}.json").read_text("utf-8"))
    assert comfy_server.get("/api/global_subgraphs").json() == listed  # also under /api, where the frontend asks


def expand_subgraphs(workflow: dict, info: dict) -> dict:
    """A frontend-saved workflow with subgraphs as an API prompt, by vmdiff_cli/workflow_convert's own expansion
    (``ui_to_api`` expanding ``definitions.subgraphs``)."""
    from vmdiff_cli.workflow_convert import ui_to_api

    return ui_to_api(workflow, info)


@pytest.mark.parametrize("name", [bp.name for bp in bb.BLUEPRINTS])
def test_the_placed_blueprint_expands_to_the_workflow_it_stands_for(classes, comfy_server, name):
    """Second path (the first is the real frontend's graphToPrompt): workflow_convert expands the blueprint node of
    the placed workflow; the prompt equals the source workflow's (the nodes the blueprint leaves out removed)."""
    bp = next(b for b in bb.BLUEPRINTS if b.name == name)
    _, placed = bb.build(bp, classes)
    info = comfy_server.object_info()
    expected = expand_subgraphs(bb.expanded_workflow(bp, classes), info)
    assert canonical(expand_subgraphs(placed, info)) == canonical(expected)
