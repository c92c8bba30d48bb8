"""Workflows with subgraphs (what the frontend saves today) expanded as the frontend's graphToPrompt
does (vmdiff_cli/workflow_convert.expand_subgraphs): one subgraph, nested, one used twice, a subgraph input feeding two
inner nodes, an output used by two outer nodes, an unlinked input's promoted widget value (both saved forms),
muted and bypassed subgraph nodes, frontend-saved templates, unknown types as one line; through the server the
shipped vmdiff_manual workflow with part of it wrapped in (nested) subgraphs gives the flat workflow's pixels."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_folders import on_tiny_loaders
from tests.support.workflows import drop_cached_outputs, shrink
from vmdiff_cli.run_workflow import apply_inputs
from vmdiff_cli.workflow_convert import UnknownNodeError, WorkflowError, expand_subgraphs, ui_to_api

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TEMPLATES = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


# --- building subgraphs as the frontend's "Convert to Subgraph" saves them --------------------------------------------
def wrap(ui: dict, ids: list[int], instance_id: int, name: str, sg_id: str | None = None) -> dict:
    """``ui`` with nodes ``ids`` of its root graph moved into a new subgraph definition and replaced by one subgraph
    node ``instance_id``: each distinct outer output feeding the group becomes one subgraph input (linked to every
    inner input it fed), each distinct inner output used outside one subgraph output (linked to every outer user).
    Root links stay arrays, the definition's links are objects, as the frontend saves them. Reusing ``sg_id`` of an
    existing definition adds a second node of it (the nodes must match that definition)."""
    ui = copy.deepcopy(ui)
    ids = set(ids)
    nodes = {n["id"]: n for n in ui["nodes"]}
    fresh = iter(range(max([lk[0] for lk in ui["links"]] + [0]) + 1000, 10**9))
    entering, leaving = {}, {}
    sg = {"id": sg_id or str(uuid.uuid4()), "version": 1, "name": name, "inputNode": {"id": -10, "bounding": [0] * 4},
          "outputNode": {"id": -20, "bounding": [0] * 4}, "inputs": [], "outputs": [], "widgets": [],
          "nodes": [nodes[i] for i in sorted(ids)], "links": [], "groups": [], "config": {}, "extra": {}}
    instance = {"id": instance_id, "type": sg["id"], "mode": 0, "inputs": [], "outputs": [], "properties": {},
                "widgets_values": []}
    root_links = []
    for lid, o, o_slot, t, t_slot, typ in ui["links"]:
        if o in ids and t in ids:
            sg["links"].append(dict(id=lid, origin_id=o, origin_slot=o_slot, target_id=t, target_slot=t_slot, type=typ))
        elif t in ids:
            target_input = nodes[t]["inputs"][t_slot]
            if (o, o_slot) not in entering:
                entering[(o, o_slot)] = len(sg["inputs"])
                sg["inputs"].append({"id": str(uuid.uuid4()), "name": f"{target_input['name']}_{len(sg['inputs'])}",
                                     "type": typ, "linkIds": []})
                instance["inputs"].append({"name": sg["inputs"][-1]["name"], "type": typ, "link": lid})
                root_links.append([lid, o, o_slot, instance_id, entering[(o, o_slot)], typ])
            k = entering[(o, o_slot)]
            inner = next(fresh)
            sg["links"].append(dict(id=inner, origin_id=-10, origin_slot=k, target_id=t, target_slot=t_slot, type=typ))
            sg["inputs"][k]["linkIds"].append(inner)
            target_input["link"] = inner
        elif o in ids:
            if (o, o_slot) not in leaving:
                leaving[(o, o_slot)] = len(sg["outputs"])
                inner = next(fresh)
                sg["outputs"].append({"id": str(uuid.uuid4()), "name": f"out_{len(sg['outputs'])}", "type": typ,
                                      "linkIds": [inner]})
                sg["links"].append(dict(id=inner, origin_id=o, origin_slot=o_slot, target_id=-20,
                                        target_slot=leaving[(o, o_slot)], type=typ))
                instance["outputs"].append({"name": sg["outputs"][-1]["name"], "type": typ, "links": []})
            instance["outputs"][leaving[(o, o_slot)]]["links"].append(lid)
            root_links.append([lid, instance_id, leaving[(o, o_slot)], t, t_slot, typ])
        else:
            root_links.append([lid, o, o_slot, t, t_slot, typ])
    ui["nodes"] = [n for n in ui["nodes"] if n["id"] not in ids] + [instance]
    ui["links"] = root_links
    definitions = ui.setdefault("definitions", {}).setdefault("subgraphs", [])
    if not any(d["id"] == sg["id"] for d in definitions):
        definitions.append(sg)
    return ui


def promote(ui: dict, instance_id: int, inner_id: int, widget: str, typ: str, value, proxy: bool = False) -> dict:
    """Expose widget ``widget`` of inner node ``inner_id`` as a subgraph input (unlinked outside) whose promoted
    widget holds ``value`` on the subgraph node: in ``widgets_values`` by position (older frontends) or as a
    ["-1", name] entry of ``properties.proxyWidgets`` (frontend ≥ 1.28)."""
    instance = next(n for n in ui["nodes"] if n["id"] == instance_id)
    sg = next(d for d in ui["definitions"]["subgraphs"] if d["id"] == instance["type"])
    inner = next(n for n in sg["nodes"] if n["id"] == inner_id)
    if not any(i["name"] == widget for i in sg["inputs"]):
        lid = max(lk["id"] for lk in sg["links"]) + 1
        sg["inputs"].append({"id": str(uuid.uuid4()), "name": widget, "type": typ, "linkIds": [lid]})
        inner.setdefault("inputs", []).append({"name": widget, "type": typ, "widget": {"name": widget}, "link": lid})
        sg["links"].append(dict(id=lid, origin_id=-10, origin_slot=len(sg["inputs"]) - 1, target_id=inner_id,
                                target_slot=len(inner["inputs"]) - 1, type=typ))
    instance["inputs"].append({"name": widget, "type": typ, "widget": {"name": widget}, "link": None})
    if proxy:
        proxies = instance["properties"].setdefault("proxyWidgets", [])
        instance["widgets_values"] += [None] * (len(proxies) - len(instance["widgets_values"]))
        proxies.append(["-1", widget])
    instance["widgets_values"].append(value)
    return ui


def image_node(nid, ctype, inputs=(), widgets=(), outputs=(), mode=0):
    return {"id": nid, "type": ctype, "mode": mode, "widgets_values": list(widgets),
            "inputs": [{"name": n, "type": t, "link": lk} for n, t, lk in inputs],
            "outputs": [{"name": n, "type": t, "links": ls} for n, t, ls in outputs]}


def core_graph() -> dict:
    """LoadImage(1) → ImageInvert(2) → ImageBlend(3) ← LoadImage(1) again; → SaveImage(4), PreviewImage(5)."""
    return {"nodes": [
        image_node(1, "LoadImage", widgets=["object_a.png", "image"], outputs=[("IMAGE", "IMAGE", [1, 2])]),
        image_node(2, "ImageInvert", [("image", "IMAGE", 1)], outputs=[("IMAGE", "IMAGE", [3])]),
        image_node(3, "ImageBlend", [("image1", "IMAGE", 3), ("image2", "IMAGE", 2)], [0.25, "normal"],
                   outputs=[("IMAGE", "IMAGE", [4, 5])]),
        image_node(4, "SaveImage", [("images", "IMAGE", 4)], ["sub_blend"]),
        image_node(5, "PreviewImage", [("images", "IMAGE", 5)])],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 0, 3, 1, "IMAGE"], [3, 2, 0, 3, 0, "IMAGE"],
                  [4, 3, 0, 4, 0, "IMAGE"], [5, 3, 0, 5, 0, "IMAGE"]]}


# --- the members -----------------------------------------------------------------------------------------------------
def test_one_subgraph_whose_input_feeds_two_nodes_and_whose_output_feeds_two(object_info):
    flat = ui_to_api(core_graph(), object_info)
    ui = wrap(core_graph(), [2, 3], 10, "Invert and blend")
    sg = ui["definitions"]["subgraphs"][0]
    assert len(sg["inputs"]) == 1 and len(sg["inputs"][0]["linkIds"]) == 2  # one input, two inner users
    assert len(ui["nodes"][-1]["outputs"][0]["links"]) == 2  # one output, two outer users
    api = ui_to_api(ui, object_info)
    assert sorted(api) == ["1", "10:2", "10:3", "4", "5"]
    assert api["10:2"]["inputs"] == {"image": ["1", 0]}
    assert api["10:3"]["inputs"] == {"image1": ["10:2", 0], "image2": ["1", 0], "blend_factor": 0.25,
                                     "blend_mode": "normal"}
    assert api["4"]["inputs"]["images"] == api["5"]["inputs"]["images"] == ["10:3", 0]
    assert renumbered(api) == renumbered(flat)


def renumbered(api: dict) -> dict:
    """The prompt with its ids replaced by their class and position, so a flat and an expanded prompt compare."""
    names = {k: f"{v['class_type']}#{n}" for n, (k, v) in enumerate(sorted(api.items(), key=lambda kv:
                                                                            (kv[1]["class_type"], kv[0])))}
    return {names[k]: {i: [names[x[0]], x[1]] if isinstance(x, list) else x for i, x in v["inputs"].items()}
            for k, v in api.items()}


def test_nested_subgraphs(object_info):
    inner = wrap(core_graph(), [2], 20, "Invert")  # ImageInvert in its own subgraph
    nested = wrap(inner, [20, 3], 30, "Invert then blend")  # that subgraph node and the blend in another
    outer_def = next(d for d in nested["definitions"]["subgraphs"] if d["name"] == "Invert then blend")
    assert any(n["type"] != "ImageBlend" for n in outer_def["nodes"])  # a subgraph node inside a subgraph
    api = ui_to_api(nested, object_info)
    assert sorted(api) == ["1", "30:20:2", "30:3", "4", "5"]
    assert api["30:20:2"]["inputs"] == {"image": ["1", 0]}
    assert api["30:3"]["inputs"]["image1"] == ["30:20:2", 0] and api["30:3"]["inputs"]["image2"] == ["1", 0]
    assert api["4"]["inputs"]["images"] == ["30:3", 0]
    assert renumbered(api) == renumbered(ui_to_api(core_graph(), object_info))


def chain_twice() -> dict:
    """LoadImage → ImageInvert(2) → ImageInvert(3) → SaveImage(4): two nodes of one 'Invert' subgraph."""
    return {"nodes": [
        image_node(1, "LoadImage", widgets=["object_a.png", "image"], outputs=[("IMAGE", "IMAGE", [1])]),
        image_node(2, "ImageInvert", [("image", "IMAGE", 1)], outputs=[("IMAGE", "IMAGE", [2])]),
        image_node(3, "ImageInvert", [("image", "IMAGE", 2)], outputs=[("IMAGE", "IMAGE", [3])]),
        image_node(4, "SaveImage", [("images", "IMAGE", 3)], ["twice"])],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "IMAGE"]]}


def test_one_subgraph_used_twice(object_info):
    once = wrap(chain_twice(), [2], 10, "Invert", sg_id="5f0c6a1e-0000-4000-8000-000000000001")
    twice = copy.deepcopy(once)
    # the second node of the same definition replaces ImageInvert 3 (its inner node keeps the id 2)
    sg = twice["definitions"]["subgraphs"][0]
    twice["nodes"] = [n for n in twice["nodes"] if n["id"] != 3] + [
        {"id": 11, "type": sg["id"], "mode": 0, "inputs": [{"name": sg["inputs"][0]["name"], "type": "IMAGE",
                                                            "link": 2}],
         "outputs": [{"name": "out_0", "type": "IMAGE", "links": [3]}], "properties": {}, "widgets_values": []}]
    twice["links"] = [[1, 1, 0, 10, 0, "IMAGE"], [2, 10, 0, 11, 0, "IMAGE"], [3, 11, 0, 4, 0, "IMAGE"]]
    api = ui_to_api(twice, object_info)
    assert sorted(api) == ["1", "10:2", "11:2", "4"]
    assert api["10:2"]["inputs"] == {"image": ["1", 0]} and api["11:2"]["inputs"] == {"image": ["10:2", 0]}
    assert api["4"]["inputs"]["images"] == ["11:2", 0]
    assert len(twice["definitions"]["subgraphs"]) == 1


@pytest.mark.parametrize("proxy", [False, True], ids=["widgets_values-by-input", "proxyWidgets"])
def test_an_unlinked_subgraph_input_takes_its_promoted_widget_value(object_info, proxy):
    ui = promote(wrap(core_graph(), [2, 3], 10, "Blend"), 10, 3, "blend_factor", "FLOAT", 0.8, proxy=proxy)
    if proxy:  # a widget the node merely shows (proxied inner widget): its value stays in the inner node
        ui["nodes"][-1]["properties"]["proxyWidgets"].insert(0, ["3", "blend_mode"])
        ui["nodes"][-1]["widgets_values"].insert(0, None)
    api = ui_to_api(ui, object_info)
    assert api["10:3"]["inputs"]["blend_factor"] == 0.8  # not the inner node's own 0.25
    assert api["10:3"]["inputs"]["blend_mode"] == "normal"
    # the promoted widget left empty (null): the inner widget keeps its own value
    ui["nodes"][-1]["widgets_values"] = [None] * len(ui["nodes"][-1]["widgets_values"])
    assert ui_to_api(ui, object_info)["10:3"]["inputs"]["blend_factor"] == 0.25
    # linked outside (a PrimitiveNode), the link's value wins over the promoted widget
    linked = copy.deepcopy(ui)
    linked["nodes"].append(image_node(40, "PrimitiveNode", widgets=[0.6, "fixed"], outputs=[("FLOAT", "FLOAT", [90])]))
    linked["nodes"][-2]["inputs"][-1]["link"] = 90
    linked["links"].append([90, 40, 0, 10, len(linked["nodes"][-2]["inputs"]) - 1, "FLOAT"])
    assert ui_to_api(linked, object_info)["10:3"]["inputs"]["blend_factor"] == 0.6


def test_two_nodes_of_one_subgraph_keep_their_own_promoted_values(object_info):
    sg_id = "5f0c6a1e-0000-4000-8000-000000000002"
    ui = wrap(chain_twice(), [2], 10, "Invert", sg_id=sg_id)
    ui = wrap(ui, [3], 11, "Invert", sg_id=sg_id)  # the same definition (one ImageInvert inside)
    assert len(ui["definitions"]["subgraphs"]) == 1
    # a blend inside instead, so that there is a widget to promote: replace the definition's node
    sg = ui["definitions"]["subgraphs"][0]
    sg["nodes"][0] = image_node(2, "ImageBlend", [("image1", "IMAGE", sg["links"][0]["id"]),
                                                 ("image2", "IMAGE", None)], [0.25, "normal"],
                                outputs=[("IMAGE", "IMAGE", [sg["links"][1]["id"]])])
    sg["nodes"][0]["inputs"][1]["link"] = 999
    sg["inputs"][0]["linkIds"].append(999)
    sg["links"].append(dict(id=999, origin_id=-10, origin_slot=0, target_id=2, target_slot=1, type="IMAGE"))
    ui = promote(ui, 10, 2, "blend_factor", "FLOAT", 0.1)
    ui = promote(ui, 11, 2, "blend_factor", "FLOAT", 0.9, proxy=True)
    api = ui_to_api(ui, object_info)
    assert api["10:2"]["inputs"]["blend_factor"] == 0.1 and api["11:2"]["inputs"]["blend_factor"] == 0.9
    assert api["10:2"]["inputs"]["image1"] == api["10:2"]["inputs"]["image2"] == ["1", 0]  # one input, two uses
    assert api["11:2"]["inputs"]["image1"] == ["10:2", 0] and api["4"]["inputs"]["images"] == ["11:2", 0]


def test_muted_and_bypassed_subgraph_nodes(object_info):
    ui = wrap(chain_twice(), [2], 10, "Invert")
    bypassed = copy.deepcopy(ui)
    next(n for n in bypassed["nodes"] if n["id"] == 10)["mode"] = 4
    api = ui_to_api(bypassed, object_info)
    assert "10:2" not in api and api["3"]["inputs"]["image"] == ["1", 0]  # passed through, like a bypassed node
    muted = copy.deepcopy(ui)
    next(n for n in muted["nodes"] if n["id"] == 10)["mode"] = 2
    api = ui_to_api(muted, object_info)
    assert "10:2" not in api and "image" not in api["3"]["inputs"]
    # a bypassed node inside a subgraph passes through to the subgraph's input
    inner_bypass = copy.deepcopy(ui)
    inner_bypass["definitions"]["subgraphs"][0]["nodes"][0]["mode"] = 4
    assert ui_to_api(inner_bypass, object_info)["3"]["inputs"]["image"] == ["1", 0]


def test_unknown_types_and_broken_subgraphs_are_one_line_errors(object_info, comfy_server, tmp_path):
    ui = wrap(core_graph(), [2, 3], 10, "Invert and blend")
    ui["definitions"]["subgraphs"][0]["nodes"][0]["type"] = "NotInstalledNode"
    with pytest.raises(UnknownNodeError) as info:
        ui_to_api(ui, object_info)
    message = str(info.value)
    assert message.startswith("node 10:2 (in subgraph 'Invert and blend'): class 'NotInstalledNode' is not known")
    assert "install the custom node pack" in message and "\n" not in message
    with pytest.raises(UnknownNodeError, match="node 7: class 'AlsoMissing'"):  # the same outside a subgraph
        ui_to_api({"nodes": [{"id": 7, "type": "AlsoMissing", "mode": 0}], "links": []}, object_info)

    orphan = wrap(core_graph(), [2, 3], 10, "Invert and blend")
    orphan["definitions"]["subgraphs"] = []
    with pytest.raises(WorkflowError, match=r"node 10: its type [0-9a-f-]{36} is a subgraph id, but the workflow "
                                            r"has no such subgraph"):
        ui_to_api(orphan, object_info)
    looped = wrap(core_graph(), [2, 3], 10, "Loop")
    sg = looped["definitions"]["subgraphs"][0]
    sg["nodes"].append({"id": 9, "type": sg["id"], "mode": 0, "inputs": [], "outputs": []})
    with pytest.raises(WorkflowError, match="subgraph 'Loop' contains itself"):
        ui_to_api(looped, object_info)
    with pytest.raises(WorkflowError, match="legacy group node"):
        ui_to_api({"nodes": [{"id": 3, "type": "workflow>My group", "mode": 0}], "links": []}, object_info)

    # the command lines: one line, no traceback
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(ui))
    oi = tmp_path / "object_info.json"
    oi.write_text(json.dumps(object_info))
    done = subprocess.run([sys.executable, str(REPO / "vmdiff_cli" / "workflow_convert.py"), str(path), "--object-info",
                           str(oi)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "NotInstalledNode" in done.stderr
    done = subprocess.run([sys.executable, str(REPO / "vmdiff_cli" / "run_workflow.py"), "--server", comfy_server.url,
                           "--workflow", str(path), "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "FAILED:" in done.stderr and "node 10:2 (in subgraph 'Invert and blend'): class 'NotInstalledNode'" \
        in done.stderr, done.stderr
    orphan_path = tmp_path / "orphan.json"
    orphan_path.write_text(json.dumps(orphan))
    done = subprocess.run([sys.executable, str(REPO / "vmdiff_cli" / "run_workflow.py"), "--tiny", "--workflow",
                           str(orphan_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "no such subgraph" in done.stderr, done.stderr
    assert "ComfyUI started" not in done.stdout  # refused before any server


def frontend_template(name: str) -> dict:
    (path,) = TEMPLATES.glob(f"comfyui_workflow_templates_media_*/templates/{name}")
    return json.loads(path.read_text())


def test_templates_saved_by_the_frontend_convert(object_info):
    """Two workflows the current frontend saved (the comfyui_workflow_templates package ComfyUI installs): a
    subgraph with a bypassed inner node and proxied widgets; a promoted text widget set on the subgraph node."""
    z_image = frontend_template("01_get_started_text_to_image.json")
    api = ui_to_api(z_image, object_info)
    assert sorted(k for k in api if ":" in k) == ["83:13", "83:27", "83:28", "83:29", "83:3", "83:30", "83:33", "83:8"]
    assert "83:11" not in api  # bypassed ModelSamplingAuraFlow: KSampler's model comes from the UNETLoader
    assert api["83:3"]["inputs"]["model"] == ["83:28", 0] and api["83:3"]["inputs"]["positive"] == ["83:27", 0]
    assert api["83:3"]["inputs"]["negative"] == ["83:33", 0] and api["60"]["inputs"]["images"] == ["83:8", 0]
    assert api["83:3"]["inputs"]["steps"] == 4 and api["83:13"]["inputs"]["width"] == 1024

    qwen = frontend_template("image_qwen_image.json")
    instance = next(n for n in qwen["nodes"] if n["properties"].get("proxyWidgets", [[None]])[0] == ["-1", "text"])
    api = ui_to_api(qwen, object_info)
    texts = [v["inputs"]["text"] for k, v in api.items() if k.startswith(f"{instance['id']}:")
             and v["class_type"] == "CLIPTextEncode" and not isinstance(v["inputs"]["text"], list)]
    assert instance["widgets_values"][0] in texts  # the prompt typed on the subgraph node reaches its encoder
    assert expand_subgraphs(z_image) is not z_image and expand_subgraphs(manual := {"nodes": [], "links": []}) is manual


# --- through the server: the shipped manual workflow, partly in subgraphs --------------------------------------------
SMALL = shrink("VMDiffBlendingNoise", "VMDiffMixingDenoise")


def manual_pixels(server, ui: dict, images: list[str], fresh: bool = True) -> tuple[np.ndarray, dict]:
    """``ui`` as the frontend would queue it, its loaders on the tiny stand-ins, at SMALL: its saved pixels."""
    api = on_tiny_loaders(ui_to_api(ui, server.object_info()))
    apply_inputs(api, images, ["owl", "jar"], [], SMALL)
    if fresh:
        drop_cached_outputs(server)  # every node really runs (an equal prompt would otherwise come from the cache)
    entry = server.run(api, timeout=900)
    (path,) = [p for p in server.output_images(entry) if "vmdiff_manual" in p.name]
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16), api


def test_the_manual_workflow_in_subgraphs_gives_the_flat_workflows_image(comfy_server, tiny_object_images):
    """Redux encodes + fusion prompt in one subgraph nested with Blending Noise + Mixing Denoise in another: run
    from scratch, the same image as the flat workflow (run from scratch too). With its seed promoted onto the outer
    subgraph node and set there, the prompt is the flat workflow's with that seed, and it renders another image (the
    loaders and encodes come from the cache). The graph is what is tested: the loaders are the tiny stand-ins."""
    manual = json.loads((REPO / "workflows" / "vmdiff_manual.json").read_text())
    flat, flat_api = manual_pixels(comfy_server, manual, tiny_object_images)
    inner = wrap(manual, [8, 9, 10], 30, "Encode")
    nested = wrap(inner, [30, 11, 12], 40, "Fuse")
    api_ids = sorted(k for k in ui_to_api(nested, comfy_server.object_info()) if ":" in k)
    assert api_ids == ["40:11", "40:12", "40:30:10", "40:30:8", "40:30:9"]
    wrapped, wrapped_api = manual_pixels(comfy_server, nested, tiny_object_images)
    assert renumbered(wrapped_api) == renumbered(flat_api)
    assert flat.shape == (32, 32, 3) and flat.std() > 0 and np.array_equal(wrapped, flat)

    # the seed promoted onto the outer subgraph node (widgets_values of the subgraph node, not of Blending Noise)
    seeded = promote(copy.deepcopy(nested), 40, 11, "seed", "INT", 7, proxy=True)
    other, seeded_api = manual_pixels(comfy_server, seeded, tiny_object_images, fresh=False)
    assert seeded_api["40:11"]["inputs"]["seed"] == 7
    flat_seed = copy.deepcopy(manual)
    next(n for n in flat_seed["nodes"] if n["id"] == 11)["widgets_values"][0] = 7
    flat_seed_api = ui_to_api(flat_seed, comfy_server.object_info())
    apply_inputs(on_tiny_loaders(flat_seed_api), tiny_object_images, ["owl", "jar"], [], SMALL)
    assert renumbered(seeded_api) == renumbered(flat_seed_api)
    assert other.shape == flat.shape and not np.array_equal(other, flat)
