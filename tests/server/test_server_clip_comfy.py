"""VMDiff CLIP from ComfyUI through a real ComfyUI server: core Load CLIP Vision + Load CLIP on a full-size random
OpenAI CLIP ViT-L-14 (tests/support/clip_towers VIT_L: the smallest two-tower CLIP the core loaders accept, their
configs
being fixed per family) score the same T1, T2 as VMDiff Load OpenCLIP on the same weights in the OpenCLIP layout;
a SigLIP CLIP_VISION is refused by name and the server answers the next prompt."""
import json

import pytest

from tests.support.clip_towers import VIT_L, ensure_clip_towers, recipe_model_name
from vmdiff_cli.comfy_server import ExecutionError
from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES as NAMES
from vmdiff_cli.tiny_models import REAL_LOADER_FILES

pytestmark = pytest.mark.slow
TOL = 1e-5


@pytest.fixture(scope="module")
def vit_l(real_models_dir):
    return {folder: path.name for folder, path in ensure_clip_towers(real_models_dir, "vit_l").items()}


def scored_pair(files, images, clip_vision_file=None):
    """Two Scorers on the same sources and DINOv2, one per CLIP route, scoring a 50/50 blend of the sources; the
    scores_json of each shown by core Preview as Text."""
    scorer = dict(dino=["dino", 0], image_1=["img1", 0], image_2=["img2", 0], label_1="owl", label_2="jar",
                  isolation="none", detection_query="most prominent object", label_text="official", resize="squash",
                  source_resize="none", box_threshold=0.25, detect_size=224)
    nodes = {
        "img1": ("LoadImage", {"image": images[0]}), "img2": ("LoadImage", {"image": images[1]}),
        "blend": ("ImageBlend", {"image1": ["img1", 0], "image2": ["img2", 0], "blend_factor": 0.5,
                                 "blend_mode": "normal"}),
        "dino": ("VMDiffLoadDINOv2", {"dinov2": NAMES["dinov2"]}),
        "open_clip": ("VMDiffLoadOpenCLIP", {"model_name": recipe_model_name(VIT_L), "checkpoint": files["open_clip"]}),
        "clip_vision": ("CLIPVisionLoader", {"clip_name": clip_vision_file or files["clip_vision"]}),
        "clip_text": ("CLIPLoader", {"clip_name": files["text_encoders"], "type": "stable_diffusion"}),
        "comfy_clip": ("VMDiffClipFromComfy", {"clip_vision": ["clip_vision", 0], "clip": ["clip_text", 0]}),
    }
    for route in ("open_clip", "comfy_clip"):
        nodes[f"scorer_{route}"] = ("VMDiffScorer", dict(scorer, open_clip=[route, 0]))
        nodes[f"score_{route}"] = ("VMDiffSimilarityScore", {"scorer": [f"scorer_{route}", 0], "images": ["blend", 0]})
        nodes[f"show_{route}"] = ("PreviewAny", {"source": [f"score_{route}", 1]})
    return {k: {"class_type": c, "inputs": i} for k, (c, i) in nodes.items()}


def test_core_loaders_give_the_open_clip_terms(vmdiff_server, object_images, vit_l):
    entry = vmdiff_server.run(scored_pair(vit_l, object_images), timeout=1200)
    (ref,), (got,) = (json.loads(entry["outputs"][f"show_{r}"]["text"][0]) for r in ("open_clip", "comfy_clip"))
    print(f"\nOpenCLIP T1 {ref['T1']:.6f} T2 {ref['T2']:.6f}; Load CLIP Vision + Load CLIP T1 {got['T1']:.6f} "
          f"T2 {got['T2']:.6f}; |ΔT| ≤ {max(abs(ref[k] - got[k]) for k in ('T1', 'T2')):.1e}")
    assert abs(ref["T1"] - got["T1"]) <= TOL and abs(ref["T2"] - got["T2"]) <= TOL
    assert ref["D1"] == got["D1"] and ref["T1"] != ref["T2"]
    (described,) = entry["outputs"]["comfy_clip"]["text"]
    assert "clip_l (OpenAI CLIP ViT-L-14)" in described and "1024 wide, 24 layers, 768-d" in described

    # SigLIP vision (the Redux stand-in) with the CLIP-L text tower: refused by name, then the next prompt runs.
    bad = scored_pair(vit_l, object_images, clip_vision_file=REAL_LOADER_FILES["clip_vision"])
    with pytest.raises(ExecutionError, match=r"clip_vision: .*no CLIP image projection.*clip_vision_g"):
        vmdiff_server.run(bad, timeout=600)
    assert vmdiff_server.run(scored_pair(vit_l, object_images), timeout=600)["status"]["status_str"] == "success"
