"""Convert a UI-format ComfyUI workflow (what "Save" writes) to the API format that POST /prompt takes.

ComfyUI v0.8.0 has no server-side converter (the frontend's graphToPrompt does it), so this mirrors what the
frontend does for plain graphs, using /object_info to know each node class's inputs:

* widget values are positional in ``widgets_values``: one per primitive input (INT, FLOAT, STRING, BOOLEAN,
  COMBO) of the node definition, in order (required, then optional), whether or not a link feeds it;
  ``forceInput`` inputs are sockets, not widgets;
* an INT/FLOAT with ``control_after_generate`` (or an INT named seed/noise_seed) is followed by its control value
  ("fixed", "randomize", ...); a COMBO with it by two values (control and filter list);
* a node with an ``image_upload``/``video_upload`` input gets an extra "upload" widget after its required inputs;
* a node saved with fewer widget values than its class now has gets the defaults for the missing last ones
  (the frontend does the same when it loads an older workflow);
* muted (mode 2) and bypassed (mode 4) nodes are left out; a link from a bypassed node or a Reroute is followed
  back to the input of the same type; links from a PrimitiveNode are dropped (its value is already in the target's
  widgets_values); Note/MarkdownNote nodes are skipped;
* subgraphs (the frontend's ``definitions.subgraphs``; a node whose type is a subgraph id) are expanded first by
  ``expand_subgraphs``, as the frontend's graphToPrompt does (ExecutableNodeDTO / SubgraphNode in
  ComfyUI_frontend 1.35): see its docstring.

Not handled: legacy group nodes (``workflow>…``; refused with what to do), dynamic (autogrow) inputs.

CLI: ``python tools/workflow_convert.py workflow.json [--server URL | --object-info oi.json] [-o api.json]``
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
SKIPPED_TYPES = {"Note", "MarkdownNote"}
PASS_THROUGH_TYPES = {"Reroute"}
MUTED, BYPASSED = 2, 4
#: the frontend's ids of a subgraph's input and output nodes (litegraph constants SUBGRAPH_INPUT_ID / _OUTPUT_ID)
SUBGRAPH_INPUT_ID, SUBGRAPH_OUTPUT_ID = -10, -20
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
MAX_SUBGRAPH_DEPTH = 64


class WorkflowError(ValueError):
    """A workflow this converter cannot turn into a prompt; the message names the node and what to do."""


class UnknownNodeError(KeyError):
    """A node class this ComfyUI does not have (a custom node pack not installed); one line naming node and fix."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def node_id_key(node_id) -> tuple:
    """Sort key of an API node id: "7" < "12" < "12:3" < "12:3:5" (the frontend's ids of nodes inside subgraphs
    are "<subgraph node id>:<inner id>")."""
    return tuple((0, int(p)) if p.lstrip("-").isdigit() else (1, p) for p in str(node_id).split(":"))


class _Scope:
    """One graph level while expanding: the root graph, or one instance of a subgraph definition."""

    def __init__(self, graph: dict, path: tuple, instance: dict | None = None, parent: "_Scope | None" = None,
                 definition: dict | None = None):
        self.graph, self.path, self.instance, self.parent, self.definition = graph, path, instance, parent, definition
        self.nodes = {n["id"]: n for n in graph.get("nodes", [])}
        self.links = _links(graph)
        self.promoted = _promoted_values(instance, definition) if instance is not None else {}

    def flat_id(self, node_id) -> str:
        return ":".join(str(p) for p in (*self.path, node_id))

    def where(self) -> str:
        return f" (in subgraph {self.definition.get('name') or self.definition['id']!r})" if self.definition else ""


def _input_feeds_widget(definition: dict, index: int) -> bool:
    """Whether subgraph input ``index`` is linked to a widget input inside (then the subgraph node shows it as a
    promoted widget whose value it saves)."""
    link_ids = (definition.get("inputs") or [])[index].get("linkIds") or []
    links = _links(definition)
    nodes = {n["id"]: n for n in definition.get("nodes", [])}
    for link_id in link_ids:
        target = nodes.get(links.get(link_id, (None,) * 5)[2])
        for inp in (target or {}).get("inputs") or []:
            if inp.get("link") == link_id:
                return bool(inp.get("widget"))
    return False


def _promoted_values(instance: dict, definition: dict) -> dict:
    """{subgraph input name: value} of the widgets a subgraph node shows for its unlinked inputs, from its
    widgets_values: with ``properties.proxyWidgets`` (frontend ≥ 1.28) entry k of widgets_values belongs to proxy k,
    and ["-1", name] proxies are the subgraph's own inputs (other proxies show an inner node's widget, whose value is
    kept in that node); without it, the values follow the inputs that feed a widget, in order. Nulls are skipped."""
    values = instance.get("widgets_values") or []
    names = [i.get("name") for i in definition.get("inputs") or []]
    if isinstance(values, dict):
        return {k: v for k, v in values.items() if k in names}
    proxies = (instance.get("properties") or {}).get("proxyWidgets")
    out = {}
    if isinstance(proxies, list) and proxies:
        for k, entry in enumerate(proxies):
            if (isinstance(entry, (list, tuple)) and len(entry) == 2 and str(entry[0]) == "-1"
                    and k < len(values) and values[k] is not None):
                out[entry[1]] = values[k]
        return out
    widget_inputs = [name for k, name in enumerate(names) if _input_feeds_widget(definition, k)]
    return {name: v for name, v in zip(widget_inputs, values) if v is not None}


def expand_subgraphs(ui: dict) -> dict:
    """The UI-format workflow with every subgraph node replaced by the nodes of its definition, as the frontend's
    graphToPrompt flattens them (ExecutableNodeDTO.resolveInput / resolveOutput); a workflow without subgraph nodes
    is returned as it is.

    * An inner node's id is "<subgraph node id>:<inner id>" (nested: "5:2:3"), its title and mode its own.
    * A link from a subgraph input (origin -10) continues from the subgraph node's input of that name in the outer
      graph; when that input is not linked, the value of the widget the subgraph node shows for it (promoted widget,
      ``widgets_values``) is the inner input's value, else the inner widget keeps its own value.
    * A link from a subgraph node's output k continues from what is linked to the definition's output k inside.
    * Widgets the subgraph node merely shows (``proxyWidgets`` [inner id, name]) keep their value in the inner node.
    * A muted or bypassed subgraph node leaves out its inner nodes; a bypassed one passes each output on from its
      input of the same type (the frontend's bypass rule).
    * One definition used by several subgraph nodes is expanded once per node, each with its own promoted values.

    Returns a new UI-format dict (node ids are strings, links are rebuilt); the input is not changed. Raises
    WorkflowError for a subgraph that contains itself or a node whose type looks like a subgraph id the workflow
    does not define."""
    definitions = {d["id"]: d for d in (ui.get("definitions") or {}).get("subgraphs") or []}
    if not any(n.get("type") in definitions or (isinstance(n.get("type"), str) and _UUID.match(n["type"]))
               for n in ui.get("nodes", [])):
        return ui
    flat_nodes: list[dict] = []
    flat_links: list[list] = []

    def resolve(scope: _Scope, link_id, depth: int = 0):
        """("node", flat id, slot) or ("value", v) of what a link of ``scope`` carries, or None."""
        if link_id is None or link_id not in scope.links or depth > 10_000:
            return None
        origin, slot, _, _, _ = scope.links[link_id]
        if origin == SUBGRAPH_INPUT_ID:
            if scope.instance is None:
                return None
            names = [i.get("name") for i in scope.definition.get("inputs") or []]
            if not 0 <= slot < len(names):
                return None
            outer = next((i for i in scope.instance.get("inputs") or [] if i.get("name") == names[slot]), None)
            if outer is not None and outer.get("link") is not None:
                return resolve(scope.parent, outer["link"], depth + 1)
            return ("value", scope.promoted[names[slot]]) if names[slot] in scope.promoted else None
        node = scope.nodes.get(origin)
        if node is None:
            return None
        if node.get("type") in definitions:
            if node.get("mode") == BYPASSED:  # pass on the input of the same type (same slot first)
                ins = node.get("inputs") or []
                want = (definitions[node["type"]].get("outputs") or [{}])[slot].get("type") \
                    if slot < len(definitions[node["type"]].get("outputs") or []) else None
                order = ([ins[slot]] if slot < len(ins) else []) + ins
                for inp in order:
                    if inp.get("link") is not None and inp.get("type") == want:
                        return resolve(scope, inp["link"], depth + 1)
                return None
            if node.get("mode") == MUTED:
                return None
            inner = child_scope(scope, node)
            outputs = inner.definition.get("outputs") or []
            link_ids = outputs[slot].get("linkIds") or [] if slot < len(outputs) else []
            return resolve(inner, link_ids[0], depth + 1) if link_ids else None
        if node.get("type") == "PrimitiveNode":  # its value, as the frontend writes it into what it feeds
            values = node.get("widgets_values") or []
            return ("value", values[0]) if values else None
        return ("node", scope.flat_id(origin), slot)

    def child_scope(scope: _Scope, node: dict) -> _Scope:
        definition = definitions[node["type"]]
        ancestors, s = [], scope
        while s is not None and s.definition is not None:
            ancestors.append(s.definition["id"])
            s = s.parent
        if definition["id"] in ancestors or len(scope.path) >= MAX_SUBGRAPH_DEPTH:
            raise WorkflowError(f"node {scope.flat_id(node['id'])}: subgraph {definition.get('name')!r} contains "
                                f"itself; remove the inner copy in the ComfyUI editor and save again")
        return _Scope(definition, (*scope.path, node["id"]), node, scope, definition)

    def walk(scope: _Scope) -> None:
        for node in scope.graph.get("nodes", []):
            ntype = node.get("type")
            if ntype in definitions:
                if node.get("mode") not in (MUTED, BYPASSED):
                    walk(child_scope(scope, node))
                continue
            if isinstance(ntype, str) and _UUID.match(ntype):
                raise WorkflowError(f"node {scope.flat_id(node['id'])}{scope.where()}: its type {ntype} is a "
                                    f"subgraph id, but the workflow has no such subgraph in definitions.subgraphs; "
                                    f"open it in ComfyUI and save it again (or export it with its subgraphs)")
            flat = dict(node, id=scope.flat_id(node["id"]))
            if scope.definition is not None:
                flat["_subgraph"] = scope.definition.get("name") or scope.definition["id"]
            inputs, values = [], {}
            for k, inp in enumerate(node.get("inputs") or []):
                inp = dict(inp, link=None)
                found = resolve(scope, node["inputs"][k].get("link"))
                if found and found[0] == "node":
                    flat_links.append([len(flat_links) + 1, found[1], found[2], flat["id"], k, inp.get("type")])
                    inp["link"] = len(flat_links)
                elif found and found[0] == "value":
                    values[inp.get("name")] = found[1]
                inputs.append(inp)
            flat["inputs"] = inputs
            if values:
                flat["_subgraph_values"] = values
            flat_nodes.append(flat)

    walk(_Scope(ui, ()))
    out = {k: v for k, v in ui.items() if k not in ("nodes", "links", "definitions")}
    return {**out, "nodes": flat_nodes, "links": flat_links}


def _ordered_inputs(node_def: dict):
    """Yield (name, spec, section) in the order the frontend builds widgets."""
    inputs = node_def.get("input", {})
    order = node_def.get("input_order", {})
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name in order.get(section, list(specs)):
            if name in specs:
                yield name, specs[name], section


def _type_and_options(spec: list) -> tuple:
    """(type, options dict) of one /object_info input spec."""
    return spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})


def widget_slots(node_def: dict) -> list[str | None]:
    """Names of the entries of widgets_values for this node class (None = a value the API does not take)."""
    slots: list[str | None] = []
    upload = False
    for name, spec, section in _ordered_inputs(node_def):
        typ, opts = _type_and_options(spec)
        is_combo = isinstance(typ, list) or typ == "COMBO"
        if section == "optional" and upload:  # the frontend appends "upload" to the required inputs
            slots.append(None)
            upload = False
        if opts.get("forceInput") or not (is_combo or typ in WIDGET_TYPES):
            continue
        slots.append(name)
        control = opts.get("control_after_generate")
        if control is None and typ == "INT":
            control = name in ("seed", "noise_seed")
        if control:
            slots += [None, None] if is_combo else [None]
        if section == "required" and any(opts.get(flag) for flag in UPLOAD_FLAGS):
            upload = True
    if upload:
        slots.append(None)
    return slots


def _default(node_def: dict, name: str):
    """The value the frontend gives a new widget: its default, else a combo's first option, else 0 / ""."""
    typ, opts = _type_and_options(next(spec for n, spec, _ in _ordered_inputs(node_def) if n == name))
    if "default" in opts:
        return opts["default"]
    options = typ if isinstance(typ, list) else opts.get("options", [])
    if options:
        return options[0]
    return {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False}.get(typ, "")


def _links(ui: dict) -> dict[int, tuple[int, int, int, int, str]]:
    """link id -> (from_node, from_slot, to_node, to_slot, type); accepts array and object links."""
    out = {}
    for link in ui.get("links", []):
        if isinstance(link, dict):
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                    link.get("type")]
        out[link[0]] = tuple(link[1:6])
    return out


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """Return the API-format prompt ``{node_id: {"class_type", "inputs", "_meta"}}`` of a UI-format workflow."""
    if "nodes" not in ui:
        raise WorkflowError("not a UI-format workflow (no 'nodes'); API-format JSON can be queued as it is")
    ui = expand_subgraphs(ui)
    nodes = {n["id"]: n for n in ui["nodes"]}
    links = _links(ui)

    def source(link_id, seen=()):
        """Follow a link back through Reroutes and bypassed nodes; None if it leads nowhere usable."""
        if link_id is None or link_id not in links or link_id in seen:
            return None
        src_id, src_slot, _, _, typ = links[link_id]
        src = nodes.get(src_id)
        if src is None or src.get("mode") == MUTED or src["type"] == "PrimitiveNode":
            return None
        if src["type"] in PASS_THROUGH_TYPES or src.get("mode") == BYPASSED:
            ins = src.get("inputs") or []
            same_slot = [ins[src_slot]] if src_slot < len(ins) else []
            for inp in same_slot + ins:
                if inp.get("link") is not None and (src["type"] in PASS_THROUGH_TYPES or inp.get("type") == typ):
                    return source(inp["link"], seen + (link_id,))
            return None
        return [str(src_id), src_slot]

    prompt = {}
    for node in sorted(ui["nodes"], key=lambda n: node_id_key(n["id"])):
        ctype = node["type"]
        if ctype in SKIPPED_TYPES or ctype in PASS_THROUGH_TYPES or ctype == "PrimitiveNode":
            continue
        if node.get("mode") in (MUTED, BYPASSED):
            continue
        if ctype not in object_info:
            where = f" (in subgraph {node['_subgraph']!r})" if node.get("_subgraph") else ""
            if isinstance(ctype, str) and ctype.startswith(("workflow>", "workflow/")):
                raise WorkflowError(f"node {node['id']}{where}: {ctype!r} is a legacy group node, which this "
                                    f"converter does not expand; in ComfyUI convert it to a subgraph (or ungroup "
                                    f"it) and save the workflow again")
            raise UnknownNodeError(f"node {node['id']}{where}: class {ctype!r} is not known to this ComfyUI (pack "
                                   f"not installed?); install the custom node pack that provides it (e.g. "
                                   f"ComfyUI-Manager: Install Missing Custom Nodes) and restart ComfyUI")
        inputs = {}
        values = node.get("widgets_values") or []
        if isinstance(values, dict):  # some nodes save widgets by name
            inputs.update({k: v for k, v in values.items() if not k.startswith("_")})
        else:
            slots = widget_slots(object_info[ctype])
            if len(values) > len(slots):
                raise WorkflowError(f"node {node['id']} ({ctype}): {len(values)} widget values for widget slots "
                                    f"{slots}")
            inputs.update({name: val for name, val in zip(slots, values) if name is not None})
            for name in slots[len(values):]:  # saved before the node grew these widgets: the frontend's default
                if name is not None:
                    inputs[name] = _default(object_info[ctype], name)
        inputs.update(node.get("_subgraph_values") or {})  # promoted widgets of an unlinked subgraph input
        for inp in node.get("inputs") or []:
            src = source(inp.get("link"))
            if src is not None:
                inputs[inp["name"]] = src
        title = node.get("title") or object_info[ctype].get("display_name") or ctype
        prompt[str(node["id"])] = {"class_type": ctype, "inputs": inputs, "_meta": {"title": title}}
    return prompt


def as_api(workflow: dict, object_info: dict) -> dict:
    """The API-format prompt of a UI- or API-format workflow: converted, or a copy (callers may edit the result)."""
    return ui_to_api(workflow, object_info) if "nodes" in workflow else copy.deepcopy(workflow)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workflow", type=Path)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--server", help="URL of a running ComfyUI with the needed nodes (its /object_info is used)")
    src.add_argument("--object-info", type=Path, help="a saved /object_info JSON")
    ap.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = ap.parse_args(argv)
    if args.server:
        import requests

        object_info = requests.get(args.server.rstrip("/") + "/object_info", timeout=120).json()
    else:
        object_info = json.loads(args.object_info.read_text())
    try:
        api = ui_to_api(json.loads(args.workflow.read_text()), object_info)
    except (UnknownNodeError, WorkflowError) as exc:  # one line naming the node and what to do
        print(f"[workflow_convert] error: {args.workflow}: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(api, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
