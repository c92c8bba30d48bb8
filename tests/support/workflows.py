"""Shipped workflows as API prompts for the server tests: UI JSON → API, the object images and labels set, and any
unlinked input overridden by name."""
from __future__ import annotations

import json

from vmdiff_cli.run_workflow import apply_inputs
from vmdiff_cli.workflow_convert import ui_to_api

from vmdiff_cli.comfy_env import REPO_ROOT

WORKFLOWS = REPO_ROOT / "workflows"

#: The one home of workflow shrinking: the smallest run of each class on the stand-ins ({class_type: {input: value}},
#: what apply_inputs / workflow_prompt take). A test picks the classes of its workflow with shrink().
SMALL = {
    "VMDiffBlendingNoise": {"width": 32, "height": 32, "steps": 2, "t_den_step": 0},
    "VMDiffMixingDenoise": {"steps": 2},
    "VMDiffRandomNoise": {"width": 32, "height": 32},
    "VMDiffAutoTune": {"width": 32, "height": 32, "steps": 2, "t_den_step": 0},
    "VMDiffMagicMix": {"steps": 4},
    "ModelSamplingFlux": {"width": 96, "height": 96},
    "EmptySD3LatentImage": {"width": 32, "height": 32},
    "KSampler": {"steps": 2},
}


def shrink(*classes: str, **changes: dict) -> dict:
    """SMALL's entries for ``classes`` (every class when none), each updated by ``changes[class]``; a class only in
    ``changes`` is added as given."""
    picked = {c: dict(SMALL[c]) for c in (classes or SMALL)}
    for class_type, values in changes.items():
        picked.setdefault(class_type, {}).update(values)
    return picked


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
