"""The baseline and N-object workflows through the real server (their loaders on the tiny stand-ins, smallest sizes;
the real loaders run these workflows as shipped in test_server_templates): Baseline 1
(random ε + Mixing Denoise), Baseline 2 (Blending Noise + Mixing Denoise) and the core two-Redux graph side by side,
and three-object fusion, whose result does not depend on the order of the objects (equal weights)."""
import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_folders import on_tiny_loaders
from tests.support.workflows import shrink, workflow_prompt

pytestmark = pytest.mark.slow
TINY_TEXT_WIDTH = 64  # the tiny Flux's context width (vmdiff_cli/tiny_models.tiny_flux)
SMALL = shrink("VMDiffBlendingNoise", "VMDiffMixingDenoise", "VMDiffRandomNoise", "EmptySD3LatentImage", "KSampler")



def prompt_of(server, name, images, labels):
    return on_tiny_loaders(workflow_prompt(server, name, images, labels, SMALL))


def by_class(api, class_type):
    return [k for k, v in api.items() if v["class_type"] == class_type]


def saved(server, entry) -> dict:
    return {p.name.rsplit("_", 2)[0]: np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
            for p in server.output_images(entry)}


def test_baselines_side_by_side(vmdiff_server, three_object_images):
    # a seed no other server test uses: with a cached Mixing Denoise, Blending Noise would not run and show no text
    unique_seed = {k: {**v, "seed": 5301} for k, v in SMALL.items()
                   if k in ("VMDiffBlendingNoise", "VMDiffRandomNoise")}
    api = on_tiny_loaders(workflow_prompt(vmdiff_server, "vmdiff_baselines", three_object_images[:2], ["owl", "jar"],
                                          {**SMALL, **unique_seed}))
    # The stand-ins have no T5-XXL: the core branch's DualCLIPLoader → CLIPTextEncode becomes the fusion prompt's
    # CLIP conditioning zero-padded to the tiny Flux's text width (test-only node); the Redux chain and the sampler are
    # as shipped.
    (text,), (dual,), (fusion,) = by_class(api, "CLIPTextEncode"), by_class(api, "DualCLIPLoader"), \
        by_class(api, "VMDiffFusionPrompt")
    api[text] = {"class_type": "VMDiffTestFluxText", "inputs": {"conditioning": [fusion, 0], "width": TINY_TEXT_WIDTH}}
    del api[dual]
    entry = vmdiff_server.run(api, timeout=900)
    images = saved(vmdiff_server, entry)
    assert sorted(images) == ["core_two_redux", "vmdiff_baseline1", "vmdiff_baseline2"]
    for pixels in images.values():
        assert pixels.shape == (32, 32, 3) and np.isfinite(pixels).all()
    b1, b2, core = images["vmdiff_baseline1"], images["vmdiff_baseline2"], images["core_two_redux"]
    assert np.abs(b1 - b2).max() > 0 and np.abs(b2 - core).max() > 0  # Blending Noise changes the result
    texts = [t for out in entry["outputs"].values() for t in out.get("text", [])]
    assert any("no Blending Noise" in t for t in texts) and any("ε_b: 2 NFE" in t for t in texts)
    # Baseline 1 and 2 differ only in their ε, both Mixing Denoise at α 0.5 on the same tokens and prompt
    mixes = [api[k]["inputs"] for k in by_class(api, "VMDiffMixingDenoise")]
    assert len(mixes) == 2 and {m["alpha"] for m in mixes} == {0.5}
    assert [{k: v for k, v in m.items() if k != "eps_b"} for m in mixes][0] == \
        [{k: v for k, v in m.items() if k != "eps_b"} for m in mixes][1]


def test_three_objects_fuse_in_any_order(vmdiff_server, three_object_images):
    labels = ["owl", "jar and a teapot"]
    prompt = prompt_of(vmdiff_server, "vmdiff_three_objects", three_object_images, labels)
    first = saved(vmdiff_server, vmdiff_server.run(prompt, timeout=900))["vmdiff_three_objects"]
    assert first.shape == (32, 32, 3) and first.std() > 0
    # equal weights: the order of the objects must not matter
    permuted = [three_object_images[2], three_object_images[0], three_object_images[1]]
    again = saved(vmdiff_server, vmdiff_server.run(prompt_of(vmdiff_server, "vmdiff_three_objects", permuted, labels),
                                                   timeout=900))["vmdiff_three_objects"]
    assert np.abs(again - first).max() <= 2.0  # (that the third set's weight matters: test_nway_nodes_inprocess)
