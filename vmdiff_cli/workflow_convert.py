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
  widgets_values); Note/MarkdownNote nodes are skipped.

Not handled: subgraphs, group nodes, dynamic (autogrow) inputs.

CLI: ``python -m vmdiff_cli.workflow_convert workflow.json [--server URL | --object-info oi.json] [-o api.json]``
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
SKIPPED_TYPES = {"Note", "MarkdownNote"}
PASS_THROUGH_TYPES = {"Reroute"}
MUTED, BYPASSED = 2, 4


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
        raise ValueError("not a UI-format workflow (no 'nodes'); API-format JSON can be queued as it is")
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
    for node in sorted(ui["nodes"], key=lambda n: n["id"]):
        ctype = node["type"]
        if ctype in SKIPPED_TYPES or ctype in PASS_THROUGH_TYPES or ctype == "PrimitiveNode":
            continue
        if node.get("mode") in (MUTED, BYPASSED):
            continue
        if ctype not in object_info:
            raise KeyError(f"node {node['id']}: class {ctype!r} is not known to this ComfyUI (pack not installed?)")
        inputs = {}
        values = node.get("widgets_values") or []
        if isinstance(values, dict):  # some nodes save widgets by name
            inputs.update({k: v for k, v in values.items() if not k.startswith("_")})
        else:
            slots = widget_slots(object_info[ctype])
            if len(values) > len(slots):
                raise ValueError(f"node {node['id']} ({ctype}): {len(values)} widget values for widget slots {slots}")
            inputs.update({name: val for name, val in zip(slots, values) if name is not None})
            for name in slots[len(values):]:  # saved before the node grew these widgets: the frontend's default
                if name is not None:
                    inputs[name] = _default(object_info[ctype], name)
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
    api = ui_to_api(json.loads(args.workflow.read_text()), object_info)
    text = json.dumps(api, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
