"""Writes the pack's subgraph blueprints, ``subgraphs/<name>.json``, from the shipped workflows' own description.

ComfyUI serves a pack's ``subgraphs/*.json`` at ``GET /global_subgraphs`` (``app/subgraph_manager.py``, already in
0.8.0) and the frontend offers each as one node ("Subgraph Blueprints" in the node library) that the user can open
and edit. A blueprint here is cut out of a graph of ``scripts/build_workflows.py`` (the one-place description the
shipped workflows come from, built by its ``build_ui``): the nodes named ``inside`` go into the subgraph, the models
and images they read become the subgraph's socket inputs, the widgets a user sets (``exposed``) become widget inputs
on the outside, and the chosen outputs its outputs. Adding a blueprint is one ``Blueprint(...)`` entry in
``BLUEPRINTS`` ("VMDiff FLUX.2 Fuse", cut out of the FLUX.2 workflow, is one).

    .venv/bin/python -m scripts.build_blueprints          # rewrites subgraphs/*.json
    .venv/bin/python -m scripts.build_blueprints --check  # exit 1 if a file differs from its description

The file format is the frontend's (``definitions.subgraphs`` of a workflow whose one node is the subgraph; the
frontend's own "Publish subgraph" writes the same): its description, category and search aliases are read by
frontend 1.58.1 (``extra.BlueprintDescription``, ``extra.BlueprintSearchAliases``, the definition's ``category`` and
``essentials_category``; served by ComfyUI 0.8.0, 1.58.1 overwrites the aliases with the backend's, which 0.8.0 has
not);
the pinned 1.35.9 lists it under "Subgraph Blueprints" with the description.
"""
from __future__ import annotations

import argparse
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from scripts.generated_files import write_or_check
from scripts.build_workflows import (FLUX2, FULL, MANUAL, PRIMITIVES, Default, OnPurpose, _input_spec, build_ui,
                                     declared_default)

REPO_ROOT = Path(__file__).resolve().parents[1]

SUBGRAPHS = REPO_ROOT / "subgraphs"
#: uuid5 namespace: a blueprint's subgraph id and slot ids follow from its name (stable across rebuilds)
NAMESPACE = uuid.UUID("6f1b7c52-6a0e-4c8e-9a55-2f0c3f7d1e22")
PRIMITIVE_OF = {"INT": "PrimitiveInt", "FLOAT": "PrimitiveFloat", "STRING": "PrimitiveString"}
INPUT_NODE, OUTPUT_NODE = -10, -20  # the subgraph's input and output nodes (fixed ids of the format)
CATEGORY = "VMDiff"


@dataclass(frozen=True)
class Blueprint:
    """One blueprint cut out of a workflow description (``graph``: node key → (class, col, row, inputs, title)).

    ``inside``: the node keys that go into the subgraph. ``sockets``: subgraph input name → (outside node key, output
    slot) it stands for. ``exposed``: widget input name → the (inside node key, input) pairs it sets (one value for
    all). ``outputs``: subgraph output name → (inside node key, output slot)."""
    name: str
    description: str
    graph: dict
    inside: tuple[str, ...]
    sockets: dict[str, tuple[str, int]]
    exposed: dict[str, tuple[tuple[str, str], ...]]
    outputs: dict[str, tuple[str, int]]
    search_aliases: tuple[str, ...] = ()
    #: the newer frontends' Essentials tab section (1.58.1 reads a blueprint's from its definition)
    essentials_category: str | None = "generate-image"

    @property
    def file_name(self) -> str:
        return f"{self.name}.json"

    @property
    def subgraph_id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, self.name))


SEARCH_ALIASES = ("fuse", "blend", "mix objects", "hybrid", "chimera", "merge two images")
FUSE_SOCKETS = {"model": ("unet", 0), "clip": ("clip", 0), "clip_vision": ("clip_vision", 0),
                "style_model": ("redux", 0), "vae": ("vae", 0), "image_1": ("image_1", 0), "image_2": ("image_2", 0)}

BLUEPRINTS = [
    Blueprint(
        name="VMDiff Fuse",
        description="VMDiff: fuse the objects of two images into one hybrid object at mix weight α (FLUX.1 + "
                    "Redux). Inside: two Redux Encodes, the Fusion Prompt, Blending Noise, Mixing Denoise and the "
                    "VAE decode of the manual workflow; open it to change the rest.",
        graph=MANUAL,
        inside=("tokens_1", "tokens_2", "prompt", "blend", "mix", "decode"),
        sockets=FUSE_SOCKETS,
        exposed={"label_1": (("prompt", "label_1"),), "label_2": (("prompt", "label_2"),),
                 "alpha": (("mix", "alpha"),), "seed": (("blend", "seed"),),
                 "steps": (("blend", "steps"), ("mix", "steps"))},
        outputs={"image": ("decode", 0)},
        search_aliases=SEARCH_ALIASES),
    Blueprint(
        name="VMDiff Auto-Tune Fuse",
        description="The full VMDiff method: fuse two objects with α (and β) found by the scored search "
                    "(Auto-Tune, Efficient Adaptive Adjustment). Inside: two Redux Encodes, the Fusion Prompt, "
                    "the Scorer and Auto-Tune of the full workflow; the scorer models come in as inputs. Out: the "
                    "image, its replay parameters and the score plot.",
        graph=FULL,
        inside=("tokens_1", "tokens_2", "prompt", "scorer", "auto_tune"),
        sockets={**FUSE_SOCKETS, "dino": ("dinov2", 0), "open_clip": ("open_clip", 0),
                 "grounding_dino": ("grounding_dino", 0)},
        exposed={"label_1": (("prompt", "label_1"), ("scorer", "label_1")),
                 "label_2": (("prompt", "label_2"), ("scorer", "label_2")),
                 "seed": (("auto_tune", "seed"),), "steps": (("auto_tune", "steps"),)},
        outputs={"image": ("auto_tune", 0), "params": ("auto_tune", 7), "plot": ("auto_tune", 9)},
        search_aliases=(*SEARCH_ALIASES, "auto-tune", "score")),
    Blueprint(
        name="VMDiff FLUX.2 Fuse",
        description="VMDiff on FLUX.2 [klein]: fuse the objects of two images into one hybrid object at mix weight "
                    "α, the images read as reference latents (β weighs each in Blending Noise). Inside: the two "
                    "images scaled to about 1 MP, two Reference Encodes, the Fusion Prompt, Blending Noise, Mixing "
                    "Denoise and the VAE decode of the FLUX.2 workflow; open it to change the rest.",
        graph=FLUX2,
        inside=("scaled_1", "scaled_2", "tokens_1", "tokens_2", "prompt", "blend", "mix", "decode"),
        sockets={"model": ("unet", 0), "clip": ("clip", 0), "vae": ("vae", 0), "image_1": ("image_1", 0),
                 "image_2": ("image_2", 0)},
        exposed={"label_1": (("prompt", "label_1"),), "label_2": (("prompt", "label_2"),),
                 "alpha": (("mix", "alpha"),), "beta_1": (("blend", "beta_1"),), "beta_2": (("blend", "beta_2"),),
                 "seed": (("blend", "seed"),), "steps": (("blend", "steps"), ("mix", "steps"))},
        outputs={"image": ("decode", 0)},
        search_aliases=(*SEARCH_ALIASES, "flux.2", "klein", "reference")),
]


def _slot_id(blueprint: Blueprint, kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{blueprint.name}/{kind}/{name}"))


def _widget_value(blueprint: Blueprint, name: str, classes: dict):
    """The value the source workflow gives exposed widget ``name``: as set (on purpose or not), a primitive's value
    when linked, else the node's declared default (what build_ui saves for it)."""
    key, input_name = blueprint.exposed[name][0]
    class_type, value = blueprint.graph[key][0], blueprint.graph[key][3].get(input_name)
    if isinstance(value, tuple):  # linked in the workflow (a primitive): its value
        value = blueprint.graph[value[1]][3]["value"]
    if isinstance(value, OnPurpose):
        value = value.value
    if isinstance(value, Default):
        class_type, input_name, value = value.class_type, value.name, None
    return declared_default(classes, class_type, input_name) if value is None else value


def _wired_graph(blueprint: Blueprint, classes: dict) -> tuple[dict, dict[str, str]]:
    """The workflow description with one primitive node per exposed widget, linked to every input it sets, and
    the outside nodes the blueprint no longer needs dropped. Returns it and {exposed name: its primitive's key}."""
    graph = {k: v for k, v in blueprint.graph.items()}
    primitives = {}
    for name, targets in blueprint.exposed.items():
        key, input_name = targets[0]
        kind = _input_kind(classes[graph[key][0]], input_name)
        primitives[name] = f"__exposed_{name}"
        graph[primitives[name]] = (PRIMITIVE_OF[kind], 1, 8, {"value": _widget_value(blueprint, name, classes)}, name)
        for key, input_name in targets:
            graph[key] = graph[key][:3] + ({**graph[key][3], input_name: ("@", primitives[name], 0)}, graph[key][4])
    # outside nodes that fed an exposed widget (primitives of the workflow) and outside nodes that read an inside
    # output the blueprint does not offer (e.g. the t_den preview, the FLUX.2 workflow's core branch) are left out,
    # with whatever read only them, and the outside nodes whose every reader is left out (the core branch's noise,
    # sampler, σ and latent)
    fed = {v[1] for name, targets in blueprint.exposed.items() for key, inp in targets
           for v in [blueprint.graph[key][3].get(inp)] if isinstance(v, tuple)}
    offered = set(blueprint.outputs.values())
    keep = {k: v for k, v in graph.items() if k not in fed}
    read = {v[1] for node in blueprint.graph.values() for v in node[3].values() if isinstance(v, tuple)}
    changed = True
    while changed:
        changed = False
        for key in [k for k in keep if k not in blueprint.inside and not k.startswith("__exposed_")]:
            links = [v for v in keep[key][3].values() if isinstance(v, tuple)]
            if any(v[1] not in keep or (v[1] in blueprint.inside and (v[1], v[2]) not in offered) for v in links) \
                    or (key in read and not any(v[1] == key for node in keep.values() for v in node[3].values()
                                                if isinstance(v, tuple))):
                del keep[key]
                changed = True
    return keep, primitives


def _frontend_inputs(node: dict, cls, inner_links: list[dict]) -> None:
    """In place: an inside node's inputs as the frontend holds them (every socket, then every widget, in declared
    order; what its "Publish subgraph" saves), the inner links' target slots renumbered to match. The pinned frontend
    (1.35.9) pastes a blueprint by these slots: with build_ui's list (linked inputs only) a promoted value was
    written into whichever input stood at that slot of its own list (β1 into seed, β2 into width)."""
    spec = [(name, kind, kind in PRIMITIVES and not opts.get("forceInput")) for name, kind, opts in _input_spec(cls)]
    saved = {i["name"]: i for i in node["inputs"]}
    order = [s for s in spec if not s[2]] + [s for s in spec if s[2]]
    node["inputs"] = [saved.get(name, {"name": name, "type": kind, "link": None,
                                       **({"widget": {"name": name}} if widget else {})})
                      for name, kind, widget in order]
    slot = {i["link"]: n for n, i in enumerate(node["inputs"]) if i["link"] is not None}
    for link in inner_links:
        if link["target_id"] == node["id"]:
            link["target_slot"] = slot[link["id"]]


def _input_kind(cls, name: str) -> str:
    types = cls.INPUT_TYPES()
    spec = {**types.get("required", {}), **types.get("optional", {})}[name]
    return spec[0] if isinstance(spec[0], str) else "COMBO"


def build(blueprint: Blueprint, classes: dict) -> tuple[dict, dict]:
    """(the blueprint file's content, the "placed" workflow: the same outside nodes as the source workflow with one
    node of the blueprint in place of the inside nodes, linked the same way)."""
    graph, primitives = _wired_graph(blueprint, classes)
    ui = build_ui(graph, classes)
    ids = {key: i + 1 for i, key in enumerate(graph)}
    inside_ids = {ids[k] for k in blueprint.inside}
    socket_of = {(ids[src], slot): name for name, (src, slot) in blueprint.sockets.items()}
    socket_of.update({(ids[primitives[name]], 0): name for name in blueprint.exposed})
    input_names = [*blueprint.sockets, *blueprint.exposed]
    output_of = {(ids[src], slot): name for name, (src, slot) in blueprint.outputs.items()}
    output_names = list(blueprint.outputs)

    inner_links, in_links, out_links, outer_links = [], {n: [] for n in input_names}, {n: [] for n in output_names}, []
    consumers = {n: [] for n in output_names}  # outside (node id, input slot) each subgraph output feeds
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        if src in inside_ids and dst in inside_ids:
            inner_links.append({"id": link_id, "origin_id": src, "origin_slot": src_slot, "target_id": dst,
                                "target_slot": dst_slot, "type": kind})
        elif dst in inside_ids:
            name = socket_of[(src, src_slot)]  # KeyError: an inside node reads an outside node not declared
            inner_links.append({"id": link_id, "origin_id": INPUT_NODE, "origin_slot": input_names.index(name),
                                "target_id": dst, "target_slot": dst_slot, "type": kind})
            in_links[name].append(link_id)
        elif src in inside_ids:
            consumers[output_of[(src, src_slot)]].append((dst, dst_slot, kind))
        else:
            outer_links.append([link_id, src, src_slot, dst, dst_slot, kind])
    next_link = max((link[0] for link in ui["links"]), default=0) + 1
    for name, (src, slot) in blueprint.outputs.items():
        kind = next(o["type"] for o in ui["nodes"][ids[src] - 1]["outputs"] if o["slot_index"] == slot)
        inner_links.append({"id": next_link, "origin_id": ids[src], "origin_slot": slot, "target_id": OUTPUT_NODE,
                            "target_slot": output_names.index(name), "type": kind})
        out_links[name].append(next_link)
        next_link += 1

    inner_nodes = [n for n in ui["nodes"] if n["id"] in inside_ids]
    for node in inner_nodes:
        _frontend_inputs(node, classes[node["type"]], inner_links)
    for node in inner_nodes:  # output link lists as seen inside the subgraph
        for out in node["outputs"]:
            out["links"] = [link["id"] for link in inner_links if link["origin_id"] == node["id"]
                            and link["origin_slot"] == out["slot_index"]]
    x0 = min(n["pos"][0] for n in inner_nodes)
    x1 = max(n["pos"][0] + n["size"][0] for n in inner_nodes)
    y0 = min(n["pos"][1] for n in inner_nodes)
    kinds = {name: next(link["type"] for link in inner_links if link["id"] in in_links[name]) for name in input_names}
    out_kinds = {name: next(link["type"] for link in inner_links if link["id"] in out_links[name])
                 for name in output_names}
    definition = {
        "id": blueprint.subgraph_id, "version": 1,
        "state": {"lastGroupId": 0, "lastNodeId": max(n["id"] for n in inner_nodes), "lastLinkId": next_link - 1,
                  "lastRerouteId": 0},
        "revision": 0, "config": {}, "name": blueprint.name, "category": CATEGORY,
        "description": blueprint.description,
        **({"essentials_category": blueprint.essentials_category} if blueprint.essentials_category else {}),
        "inputNode": {"id": INPUT_NODE, "bounding": [x0 - 300, y0, 160, 40 + 20 * len(input_names)]},
        "outputNode": {"id": OUTPUT_NODE, "bounding": [x1 + 100, y0, 160, 40 + 20 * len(output_names)]},
        "inputs": [{"id": _slot_id(blueprint, "input", name), "name": name, "type": kinds[name],
                    "linkIds": in_links[name], "localized_name": name, "pos": [x0 - 160, y0 + 30 + 20 * i]}
                   for i, name in enumerate(input_names)],
        "outputs": [{"id": _slot_id(blueprint, "output", name), "name": name, "type": out_kinds[name],
                     "linkIds": out_links[name], "localized_name": name, "pos": [x1 + 120, y0 + 30 + 20 * i]}
                    for i, name in enumerate(output_names)],
        "widgets": [], "nodes": inner_nodes, "groups": [], "links": inner_links, "extra": {},
    }
    widget_inputs = list(blueprint.exposed)

    def instance(node_id: int, pos, linked: dict[str, int], out: dict[str, list[int]]) -> dict:
        return {
            "id": node_id, "type": blueprint.subgraph_id, "pos": pos, "size": [400, 60 + 26 * len(input_names)],
            "flags": {}, "order": 0, "mode": 0,
            "inputs": [{"name": name, "localized_name": name, "type": kinds[name], "link": linked.get(name),
                        **({"widget": {"name": name}} if name in widget_inputs else {})} for name in input_names],
            "outputs": [{"name": name, "localized_name": name, "type": out_kinds[name], "links": out.get(name, [])}
                        for name in output_names],
            "title": blueprint.name,
            "properties": {"proxyWidgets": [["-1", name] for name in widget_inputs]},
            "widgets_values": [_widget_value(blueprint, name, classes) for name in widget_inputs],
        }

    extra = {"BlueprintDescription": blueprint.description, "BlueprintSearchAliases": list(blueprint.search_aliases)}
    file = {"id": str(uuid.uuid5(NAMESPACE, blueprint.name + "/file")), "revision": 0, "last_node_id": 1,
            "last_link_id": 0, "nodes": [instance(1, [0, 0], {}, {})], "links": [], "groups": [], "config": {},
            "extra": extra, "version": 0.4, "definitions": {"subgraphs": [definition]}}

    # the placed workflow: outside nodes as in the source workflow, the blueprint node linked to them
    outer_nodes = [json.loads(json.dumps(n)) for n in ui["nodes"] if n["id"] not in inside_ids
                   and n["id"] not in {ids[p] for p in primitives.values()}]
    node_id = max(n["id"] for n in ui["nodes"]) + 1
    links = [link for link in outer_links]
    linked = {}
    for name, (src, slot) in blueprint.sockets.items():
        links.append([next_link, ids[src], slot, node_id, input_names.index(name), kinds[name]])
        linked[name] = next_link
        next_link += 1
    out = {}
    for name in output_names:
        for dst, dst_slot, kind in consumers[name]:
            links.append([next_link, node_id, output_names.index(name), dst, dst_slot, kind])
            out.setdefault(name, []).append(next_link)
            next_link += 1
    by_id = {n["id"]: n for n in outer_nodes}
    for link_id, src, src_slot, dst, dst_slot, _ in links:  # the outside nodes' link fields, renumbered
        if dst in by_id:
            by_id[dst]["inputs"][dst_slot]["link"] = link_id
    for node in outer_nodes:
        for o in node["outputs"]:
            o["links"] = [link[0] for link in links if link[1] == node["id"] and link[2] == o["slot_index"]]
    inside_pos = min((n["pos"] for n in inner_nodes), key=lambda p: (p[0], p[1]))
    placed = {"last_node_id": node_id, "last_link_id": next_link - 1,
              "nodes": [*outer_nodes, instance(node_id, list(inside_pos), linked, out)], "links": links,
              "groups": [], "config": {}, "extra": {"ds": {"scale": 0.6, "offset": [40, 40]}}, "version": 0.4,
              "definitions": {"subgraphs": [definition]}}
    return file, placed


def expanded_workflow(blueprint: Blueprint, classes: dict) -> dict:
    """The source workflow as build_workflows writes it, minus the outside nodes the blueprint leaves out, each
    exposed value typed into the inputs it sets (a workflow's "Label" primitive folded in): what the blueprint
    node, placed and linked the same way, must equal."""
    graph, primitives = _wired_graph(blueprint, classes)
    graph = {k: blueprint.graph[k] for k in graph if k not in primitives.values()}
    for name, targets in blueprint.exposed.items():
        for key, input_name in targets:
            graph[key] = graph[key][:3] + ({**graph[key][3], input_name: _widget_value(blueprint, name, classes)},
                                           graph[key][4])
    return build_ui(graph, classes)


def build_all(classes: dict | None = None) -> dict[str, dict]:
    """{file name: content} of every blueprint."""
    if classes is None:
        from scripts.build_workflows import node_definitions

        classes = node_definitions()
    return {bp.file_name: build(bp, classes)[0] for bp in BLUEPRINTS}


def dump(content: dict) -> str:
    return json.dumps(content, ensure_ascii=False, indent=1) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = ap.parse_args(argv)
    return write_or_check({SUBGRAPHS / name: dump(content) for name, content in build_all().items()}, args.check,
                          "python -m scripts.build_blueprints")


if __name__ == "__main__":
    raise SystemExit(main())
