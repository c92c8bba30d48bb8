"""The full VMDiff workflow (workflows/vmdiff_full.json) through a real ComfyUI server on the real-loader stand-ins,
with a forced-score scorer (test-only node) so the search's branches, and so its candidates, are known; then the
saved PNG's replay parameters fed to the manual workflow reproduce the image exactly."""
import json

import numpy as np
import pytest
from PIL import Image

from tests.support.workflows import node_id, shrink, workflow_prompt

pytestmark = pytest.mark.slow
SMALL = shrink(VMDiffAutoTune=dict(search_steps=0, alpha_tol=0.1, beta_tol=2.0))["VMDiffAutoTune"]


def full_prompt(server, uploaded, scores: str):
    api = workflow_prompt(server, "vmdiff_full", uploaded)
    tune = node_id(api, "VMDiffAutoTune")
    api[tune]["inputs"].update(SMALL)
    api["900"] = {"class_type": "VMDiffTestForcedScorer", "inputs": {"scores": scores}}
    api[tune]["inputs"]["scorer"] = ["900", 0]
    return api


def test_full_workflow_searches_saves_and_replays(vmdiff_server, object_images):
    api = full_prompt(vmdiff_server, object_images, "1.0")  # always under the 2.4 threshold: α stage, then β stage
    entry = vmdiff_server.run(api, timeout=1200)
    saved = [p for p in vmdiff_server.output_images(entry) if p.name.startswith("vmdiff_full")]
    assert len(saved) == 1
    png = Image.open(saved[0])
    params = json.loads(png.text["vmdiff"])
    # α on [0.4, 0.6] to 0.1: 2 brackets → 3 candidates; β on [0.5, 3.5] to 2.0: one bracket → 2 candidates
    assert params["candidates"] == 5
    # ε_b(1, 1) once (1 + 1 passes), 5 Mixing Denoise runs of 2 steps, ε_b for each of the 2 β values
    assert params["sample_nfe"] == 2 + 5 * 2 + 2 * 2
    assert params["models"]["UNETLoader.unet_name"] == "flux1-krea-dev.safetensors"
    assert params["models"]["StyleModelLoader.style_model_name"] == "flux1-redux-dev.safetensors"
    assert json.loads(png.text["prompt"])  # the graph travels with the image too
    previews = vmdiff_server.output_images(entry, types=("temp",))
    assert len(previews) == 2  # plot and grid
    sizes = sorted(Image.open(p).size for p in previews)
    assert all(w >= 320 and h >= 176 for w, h in sizes)
    summary = " ".join(t for out in entry["outputs"].values() for t in out.get("text", []))
    assert "5 candidates" in summary

    replay = workflow_prompt(vmdiff_server, "vmdiff_manual", object_images, alpha=params["alpha"],  # real loaders
                             beta_1=params["beta_1"], beta_2=params["beta_2"], seed=params["seed"], width=32, height=32)
    replay[node_id(replay, "VMDiffBlendingNoise")]["inputs"].update(steps=2, t_den_step=0)
    replay[node_id(replay, "VMDiffMixingDenoise")]["inputs"].update(steps=2)
    replayed = vmdiff_server.run(replay, timeout=900)
    manual = [p for p in vmdiff_server.output_images(replayed) if p.name.startswith("vmdiff_manual")]
    assert np.array_equal(np.asarray(Image.open(manual[-1]).convert("RGB")), np.asarray(png.convert("RGB")))


def test_candidates_in_one_dit_batch_give_the_same_result_through_the_server(vmdiff_server, object_images):
    """candidates_per_batch 3 on the FLUX-width stand-in (729-token Redux sets batched as context): same winner,
    fewer DiT passes. A constant forced score makes the search path independent of the order of scoring calls."""
    results = {}
    for per_batch in (1, 3):
        api = full_prompt(vmdiff_server, object_images, "1.0")
        api[node_id(api, "VMDiffAutoTune")]["inputs"]["candidates_per_batch"] = per_batch
        entry = vmdiff_server.run(api, timeout=1200)
        (path,) = [p for p in vmdiff_server.output_images(entry) if p.name.startswith("vmdiff_full")]
        png = Image.open(path)
        results[per_batch] = (json.loads(png.text["vmdiff"]), np.asarray(png.convert("RGB"), dtype=np.int16))
    (one, image_1), (three, image_3) = results[1], results[3]
    assert {k: three[k] for k in ("alpha", "beta_1", "beta_2", "seed", "candidates")} == \
        {k: one[k] for k in ("alpha", "beta_1", "beta_2", "seed", "candidates")}
    assert np.abs(image_3 - image_1).max() <= 2  # batched float sums round differently, by far less than a level or two
    assert one["dit_calls"] == one["sample_nfe"] and three["dit_calls"] < one["dit_calls"]
    assert three["sample_nfe"] >= one["sample_nfe"] and three["candidates_per_batch"] == 3
    print(f"\n[server auto-tune] {one['candidates']} candidates: batch 1 {one['dit_calls']} DiT passes; batch 3 "
          f"{three['dit_calls']} passes, {three['sample_nfe']} latents, {three['unused_candidates']} unused")
