"""End to end through a real ComfyUI server (main.py --cpu): the shipped manual workflow, converted from its UI form,
executed over HTTP, its loaders on the test-only tiny stand-ins (the real loaders on the real-loader stand-in files
run in tests/server/test_server_templates.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vmdiff_cli.comfy_server import PromptError
from tests.support.tiny_folders import on_tiny_loaders
from tests.support.workflows import drop_cached_outputs, node_id, shrink, workflow_prompt
from vmdiff_cli.workflow_convert import ui_to_api

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MANUAL_UI = REPO / "workflows" / "vmdiff_manual.json"
MANUAL_API = REPO / "workflows" / "api" / "vmdiff_manual.json"
SMALL = shrink("VMDiffBlendingNoise", "VMDiffMixingDenoise")


@pytest.fixture(scope="module")
def uploaded(tiny_object_images):
    return tiny_object_images


def manual_prompt(server, uploaded, **inputs):
    return on_tiny_loaders(workflow_prompt(server, "vmdiff_manual", uploaded, overrides=SMALL, **inputs))


def saved_pixels(server, entry):
    paths = [p for p in server.output_images(entry) if "vmdiff_manual" in p.name]
    assert len(paths) == 1, paths
    return np.asarray(Image.open(paths[0]).convert("RGB"), dtype=np.float32)


def test_api_twin_matches_the_ui_workflow(comfy_server):
    converted = ui_to_api(json.loads(MANUAL_UI.read_text()), comfy_server.object_info())
    assert json.loads(MANUAL_API.read_text()) == converted  # same nodes, links and widget values


def cached_nodes(entry):
    return [n for m in entry["status"]["messages"] if m[0] == "execution_cached" for n in m[1]["nodes"]]


def test_manual_workflow_runs_and_is_deterministic(comfy_server, uploaded):
    # a seed no other server test uses: the shared LRU cache must not already hold this Blending Noise
    base = manual_prompt(comfy_server, uploaded, alpha=0.5, seed=4201)
    first = comfy_server.run(base, timeout=900)
    a = saved_pixels(comfy_server, first)
    assert a.shape == (32, 32, 3) and np.isfinite(a).all() and a.std() > 1.0
    texts = {k: v.get("text", []) for k, v in first["outputs"].items()}
    assert any("ε_b: 2 NFE" in t for ts in texts.values() for t in ts), texts

    other = comfy_server.run(manual_prompt(comfy_server, uploaded, alpha=0.9, seed=4202), timeout=900)
    assert np.abs(saved_pixels(comfy_server, other) - a).max() > 0

    # Drop every cached output: the same prompt recomputes everything (Redux encodes included), same pixels.
    drop_cached_outputs(comfy_server)
    again = comfy_server.run(base, timeout=900)
    for stage in ("VMDiffBlendingNoise", "VMDiffMixingDenoise"):
        assert node_id(base, stage) not in cached_nodes(again)
    assert np.array_equal(saved_pixels(comfy_server, again), a)


@pytest.mark.parametrize("inputs, names", [
    ({"alpha": 1.5}, "alpha"),
    ({"beta_2": 0.0}, "beta_2"),
    ({"t_den_step": 3}, "t_den_step"),
])
def test_bad_widget_values_are_refused_by_name_and_the_server_goes_on(comfy_server, uploaded, inputs, names):
    with pytest.raises(PromptError) as error:
        comfy_server.queue(manual_prompt(comfy_server, uploaded, **inputs))
    assert names in json.dumps(error.value.node_errors)
    entry = comfy_server.run(manual_prompt(comfy_server, uploaded, alpha=0.5), timeout=900)
    assert entry["status"]["status_str"] == "success"
