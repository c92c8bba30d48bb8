"""Shipped workflows as API prompts for the server tests: UI JSON → API, the object images and labels set, and any
unlinked input overridden by name."""
from __future__ import annotations

import json

from vmdiff_cli.run_workflow import apply_inputs
from vmdiff_cli.workflow_convert import ui_to_api

from vmdiff_cli.comfy_env import REPO_ROOT

WORKFLOWS = REPO_ROOT / "workflows"


def set_inputs(api: dict, **inputs) -> dict:
    """Set every node's *unlinked* input of that name (in place)."""
    for node in api.values():
        for name, value in inputs.items():
            if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                node["inputs"][name] = value
    return api


def workflow_prompt(server, name: str, images=(), labels=("owl", "jar"), overrides=None, **inputs) -> dict:
    """workflows/<name>.json as an API prompt for ``server``; ``overrides`` is {class_type: {input: value}}."""
    api = ui_to_api(json.loads((WORKFLOWS / f"{name}.json").read_text()), server.object_info())
    apply_inputs(api, list(images), list(labels), [], overrides)
    return set_inputs(api, **inputs)


def node_id(api: dict, class_type: str) -> str:
    return next(k for k, v in api.items() if v["class_type"] == class_type)


def drop_cached_outputs(server) -> None:
    """Make the next prompt recompute every node. ComfyUI applies /free's flag after the prompt it runs next, so a
    trivial prompt goes first to carry it."""
    server.http.post(server.url + "/free", json={"free_memory": True}, timeout=30)
    server.run({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}, timeout=120)
