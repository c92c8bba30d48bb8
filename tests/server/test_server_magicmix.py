"""The shipped MagicMix workflows end to end through a real ComfyUI server (main.py --cpu) on the project-generated
model files: Flux (UNETLoader + Redux content) and SD1.5 (CheckpointLoaderSimple + CLIPLoader clip_l), converted
from their UI form and executed over HTTP."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vmdiff_cli.run_workflow import apply_inputs
from vmdiff_cli.workflow_convert import ui_to_api
from tests.support.workflows import shrink

pytestmark = pytest.mark.slow
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FLUX_SMALL = shrink("VMDiffMagicMix", "ModelSamplingFlux")
SD15_SMALL = shrink("VMDiffMagicMix", VMDiffMagicMix={"steps": 10})


@pytest.fixture(scope="module")
def uploaded(object_images):
    return object_images


def workflow(server, name, images, overrides, prefix, **inputs):
    api = ui_to_api(json.loads((WORKFLOWS / f"{name}.json").read_text()), server.object_info())
    apply_inputs(api, images, [None, None], [], overrides)
    magicmix = next(k for k, v in api.items() if v["class_type"] == "VMDiffMagicMix")
    api[magicmix]["inputs"].update(inputs)
    next(v for v in api.values() if v["class_type"] == "SaveImage")["inputs"]["filename_prefix"] = prefix
    return api, magicmix


def run(server, api, prefix):
    entry = server.run(api, timeout=900)
    (path,) = [p for p in server.output_images(entry) if p.name.startswith(prefix)]
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32), texts


def test_api_twins_match_the_ui_workflows(vmdiff_server):
    info = vmdiff_server.object_info()
    for name in ("vmdiff_magicmix_flux", "vmdiff_magicmix_sd15", "vmdiff_vs_magicmix"):
        converted = ui_to_api(json.loads((WORKFLOWS / f"{name}.json").read_text()), info)
        assert json.loads((WORKFLOWS / "api" / f"{name}.json").read_text()) == converted, name
    both = ui_to_api(json.loads((WORKFLOWS / "vmdiff_vs_magicmix.json").read_text()), info)
    by_class = {v["class_type"]: v["inputs"] for v in both.values()}
    assert by_class["VMDiffMagicMix"]["content_tokens"] == by_class["VMDiffMixingDenoise"]["tokens_2"]
    assert by_class["VMDiffMagicMix"]["seed"] == by_class["VMDiffBlendingNoise"]["seed"]


def test_flux_magicmix_workflow_with_redux_content(vmdiff_server, uploaded):
    api, _ = workflow(vmdiff_server, "vmdiff_magicmix_flux", uploaded, FLUX_SMALL, "mm_flux")
    pixels, texts = run(vmdiff_server, api, "mm_flux")
    assert pixels.shape == (96, 96, 3) and np.isfinite(pixels).all() and pixels.std() > 1.0
    assert any("K_max = 2" in t and "K_min = 1" in t and "2 model calls" in t for t in texts), texts


def test_sd15_magicmix_workflow_and_its_img2img_reduction(vmdiff_server, uploaded):
    api, _ = workflow(vmdiff_server, "vmdiff_magicmix_sd15", uploaded[:1], SD15_SMALL, "mm_sd15")
    pixels, texts = run(vmdiff_server, api, "mm_sd15")
    assert pixels.shape == (96, 96, 3) and np.isfinite(pixels).all() and pixels.std() > 1.0
    assert any("6 model calls × 2 (cfg 7.5)" in t for t in texts), texts  # K_max = 6 of T = 10
    # ν = 1, K_min = K_max is the stock img2img: the same graph with VAEEncode + KSamplerAdvanced from step 4
    api, magicmix = workflow(vmdiff_server, "vmdiff_magicmix_sd15", uploaded[:1], SD15_SMALL, "mm_sd15_nu1",
                             nu=1.0, k_min=0.6)
    ours, _ = run(vmdiff_server, api, "mm_sd15_nu1")
    node = api[magicmix]["inputs"]
    api["90"] = {"class_type": "VAEEncode", "inputs": {"pixels": node["layout_image"], "vae": node["vae"]}}
    api["91"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": node["model"], "add_noise": "enable", "noise_seed": node["seed"], "steps": 10, "cfg": node["cfg"],
        "sampler_name": "euler", "scheduler": node["scheduler"], "positive": node["content"],
        "negative": node["negative"], "latent_image": ["90", 0], "start_at_step": 4, "end_at_step": 10000,
        "return_with_leftover_noise": "disable"}}
    decode = next(k for k, v in api.items() if v["class_type"] == "VAEDecode")
    api[decode]["inputs"]["samples"] = ["91", 0]
    del api[magicmix]
    next(v for v in api.values() if v["class_type"] == "SaveImage")["inputs"]["filename_prefix"] = "mm_sd15_stock"
    stock, _ = run(vmdiff_server, api, "mm_sd15_stock")
    assert np.array_equal(ours, stock)
    assert np.abs(ours - pixels).max() > 0
