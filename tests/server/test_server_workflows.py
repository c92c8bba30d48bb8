"""End to end through a real ComfyUI server (main.py --cpu) on the real-loader stand-in files: the shipped
manual workflow, converted from its UI form, executed over HTTP."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vmdiff_cli.comfy_server import PromptError
from tests.support.workflows import drop_cached_outputs, node_id, workflow_prompt
from vmdiff_cli.workflow_convert import ui_to_api

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MANUAL_UI = REPO / "workflows" / "vmdiff_manual.json"
MANUAL_API = REPO / "workflows" / "api" / "vmdiff_manual.json"
SMALL = {"VMDiffBlendingNoise": {"width": 64, "height": 48, "steps": 4, "t_den_step": 1},
         "VMDiffMixingDenoise": {"steps": 4}}


@pytest.fixture(scope="module")
def uploaded(object_images):
    return object_images


def manual_prompt(server, uploaded, **inputs):
    return workflow_prompt(server, "vmdiff_manual", uploaded, overrides=SMALL, **inputs)


def saved_pixels(server, entry):
    paths = [p for p in server.output_images(entry) if "vmdiff_manual" in p.name]
    assert len(paths) == 1, paths
    return np.asarray(Image.open(paths[0]).convert("RGB"), dtype=np.float32)


def test_api_twin_matches_the_ui_workflow(vmdiff_server):
    converted = ui_to_api(json.loads(MANUAL_UI.read_text()), vmdiff_server.object_info())
    assert json.loads(MANUAL_API.read_text()) == converted  # same nodes, links and widget values


def cached_nodes(entry):
    return [n for m in entry["status"]["messages"] if m[0] == "execution_cached" for n in m[1]["nodes"]]


def test_manual_workflow_runs_and_is_deterministic(vmdiff_server, uploaded):
    # a seed no other server test uses: the shared LRU cache must not already hold this Blending Noise
    base = manual_prompt(vmdiff_server, uploaded, alpha=0.5, seed=4201)
    first = vmdiff_server.run(base, timeout=900)
    a = saved_pixels(vmdiff_server, first)
    assert a.shape == (48, 64, 3) and np.isfinite(a).all() and a.std() > 1.0
    texts = {k: v.get("text", []) for k, v in first["outputs"].items()}
    assert any("ε_b: 4 NFE" in t for ts in texts.values() for t in ts), texts

    other = vmdiff_server.run(manual_prompt(vmdiff_server, uploaded, alpha=0.9, seed=4202), timeout=900)
    assert np.abs(saved_pixels(vmdiff_server, other) - a).max() > 0

    # Drop every cached output: the same prompt recomputes everything (Redux encodes included), same pixels.
    drop_cached_outputs(vmdiff_server)
    again = vmdiff_server.run(base, timeout=900)
    for stage in ("VMDiffBlendingNoise", "VMDiffMixingDenoise"):
        assert node_id(base, stage) not in cached_nodes(again)
    assert np.array_equal(saved_pixels(vmdiff_server, again), a)


@pytest.mark.parametrize("inputs, names", [
    ({"alpha": 1.5}, "alpha"),
    ({"beta_2": 0.0}, "beta_2"),
    ({"t_den_step": 3}, "t_den_step"),
])
def test_bad_widget_values_are_refused_by_name_and_the_server_goes_on(vmdiff_server, uploaded, inputs, names):
    with pytest.raises(PromptError) as error:
        vmdiff_server.queue(manual_prompt(vmdiff_server, uploaded, **inputs))
    assert names in json.dumps(error.value.node_errors)
    entry = vmdiff_server.run(manual_prompt(vmdiff_server, uploaded, alpha=0.5), timeout=900)
    assert entry["status"]["status_str"] == "success"
