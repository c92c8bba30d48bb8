"""The shipped part-level fusion workflow (workflows/vmdiff_regional.json) through a real ComfyUI server, its loaders
on the test-only tiny stand-ins (the regions are the graph's, not the loaders'): it runs, a constant map reproduces
the plain fusion pixel for pixel, and with image_attention own_region the latent of one region does not move when
only the other region's α changes."""
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from tests.support.tiny_folders import on_tiny_loaders
from tests.support.workflows import shrink, workflow_prompt
from vmdiff_cli.workflow_convert import ui_to_api

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# 64² px → latent 8×8 → 4×4 tokens; the map's top half (α_masked) is token rows 0-1 = latent rows 0-3
SMALL = shrink("VMDiffBlendingNoise", "VMDiffMixingDenoise", VMDiffMixingDenoise={"steps": 4},
               VMDiffBlendingNoise={"width": 64, "height": 64, "steps": 4, "t_den_step": 1, "seed": 1515})


def regional_prompt(server, images, top_value=1.0, **regional_inputs):
    api = on_tiny_loaders(workflow_prompt(server, "vmdiff_regional", images, overrides=SMALL))
    regional = next(k for k, v in api.items() if v["class_type"] == "VMDiffMixingDenoise" and "mask" in v["inputs"])
    api[regional]["inputs"].update(regional_inputs)
    top = next(k for k, v in api.items() if v["class_type"] == "SolidMask" and v["inputs"]["height"] == 256)
    api[top]["inputs"]["value"] = top_value
    api["save_latent"] = {"class_type": "SaveLatent", "inputs": {"samples": [regional, 0],
                                                                  "filename_prefix": "regional_latent"}}
    return api


def outputs(server, entry):
    """(plain pixels, regional pixels, regional latent, the Mixing Denoise texts) of a finished prompt."""
    pixels = {}
    for path in server.output_images(entry):
        for prefix in ("vmdiff_plain", "vmdiff_regional"):
            if path.name.startswith(prefix):
                pixels[prefix] = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    ref = entry["outputs"]["save_latent"]["latents"][0]
    latent = safetensors.torch.load_file(str(server.base / "output" / ref["subfolder"] / ref["filename"]))
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    return pixels["vmdiff_plain"], pixels["vmdiff_regional"], latent["latent_tensor"], texts


def test_api_twin_matches_the_ui_workflow(comfy_server):
    ui = json.loads((REPO / "workflows" / "vmdiff_regional.json").read_text())
    api = json.loads((REPO / "workflows" / "api" / "vmdiff_regional.json").read_text())
    assert api == ui_to_api(ui, comfy_server.object_info())


def test_regional_workflow_runs_reduces_to_plain_and_isolates_regions(comfy_server, tiny_object_images):
    plain, regional, _, texts = outputs(comfy_server, comfy_server.run(
        regional_prompt(comfy_server, tiny_object_images), timeout=900))
    assert plain.shape == regional.shape == (64, 64, 3) and regional.std() > 1.0
    assert np.abs(plain - regional).max() > 0
    assert any("2 context block(s), α = 0.2, 0.8 (whole_image)" in t and "4 NFE" in t for t in texts), texts

    # constant map (the top half set to 0 too) with the plain α: the same pixels as the plain fusion beside it
    plain_again, reduced, _, texts = outputs(comfy_server, comfy_server.run(
        regional_prompt(comfy_server, tiny_object_images, top_value=0.0, alpha=0.5), timeout=900))
    assert np.array_equal(reduced, plain_again) and np.array_equal(plain_again, plain)
    assert any("1 context block(s)" in t for t in texts), texts

    # own_region: change only the top region's α → the bottom half of the latent is bit-identical
    runs = [outputs(comfy_server, comfy_server.run(regional_prompt(
        comfy_server, tiny_object_images, alpha=0.0, alpha_masked=a, image_attention="own_region"), timeout=900))[2]
        for a in (1.0, 0.9)]
    assert runs[0].shape == (1, 16, 8, 8)
    assert torch.equal(runs[0][:, :, 4:], runs[1][:, :, 4:])
    assert not torch.allclose(runs[0][:, :, :4], runs[1][:, :, :4])
