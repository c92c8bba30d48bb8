"""Strips and single pixels through the scorer's models (GroundingDINO, SAM, centre
crops) on the tiny scorer FILES, and the one dtype conversion at the node boundary. The server tests
(tests/server/test_faults_round3.py) run the same inputs through every node; these pin what happens inside."""
import pytest
import torch

from tests.nodes.test_score_nodes import DETECT, image, loaded, models_dir  # noqa: F401  (boots ComfyUI in-process)
from vmdiff_pack.nodes.similarity_score import ScoreOptions, SimilarityScorer
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.scoring.segmentation import pad_thin_images
from vmdiff_pack.vmdiff_comfy.stages.checks import as_float32, image_input
from vmdiff_pack.vmdiff_ops import score as score_ops

STRIPS = [(1, 3000), (3000, 1), (2, 5000), (5000, 2), (1, 1)]  # (H, W)


@pytest.mark.parametrize("h, w", STRIPS)
def test_sam_segments_a_strip(loaded, h, w):
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
    masks = loaded["sam"].segment(x, [torch.tensor([0.0, 0.0, float(w), float(h)])])
    assert masks.shape == (1, 1, h, w) and masks.dtype == torch.bool


def test_sam_pads_only_thin_images():
    ordinary = torch.rand(2, 3, 48, 64)
    assert pad_thin_images(ordinary) is ordinary
    assert pad_thin_images(torch.rand(1, 3, 3, 1500)) .shape[-2:] == (3, 1500)  # 1500 → 1024 keeps 2 of 3
    assert pad_thin_images(torch.rand(1, 3, 1, 3000)).shape[-2:] == (6, 3000)


@pytest.mark.parametrize("h, w", STRIPS)
def test_grounding_dino_detects_on_a_strip(loaded, h, w):
    assert min(score_ops.grounding_resize_shape(h, w, DETECT)) >= 1
    (box, confidence), = loaded["gdino"].detect(torch.rand(1, 3, h, w), "owl .", 0.0, 0.8, DETECT)
    bounds = None if box is None else score_ops.crop_bounds(box, w, h)  # a box may reach past the image: clamped
    assert bounds is None or (0 <= bounds[0] < bounds[2] <= w and 0 <= bounds[1] < bounds[3] <= h)


@pytest.mark.parametrize("isolation", ["box", "sam"])
def test_the_scorer_takes_strip_sources_and_strip_images(loaded, isolation):
    options = ScoreOptions(isolation=isolation, detect_short_side=DETECT, box_threshold=0.0)
    scorer = SimilarityScorer(loaded["dino"], loaded["clip"], loaded["gdino"], loaded["sam"], image(1, 1, 3000),
                              image(2, 3000, 1), "owl", "jar", options)
    results = scorer.score(image(3, 2, 5000, batch=2))
    assert len(results) == 2 and all(torch.isfinite(torch.tensor(r["score"])) for r in results)


def test_centre_crops_of_strips_stay_small_and_ordinary_images_are_untouched():
    strip = torch.rand(1, 3, 1, 3000)
    assert score_ops.center_crop_resize(strip, 224, 256).shape == (1, 3, 224, 224)  # no 768 000-pixel resize
    assert score_ops.central_region(strip).shape[-2:] == (1, 16)
    for h, w in ((48, 64), (10, 160), (160, 10)):  # up to 16:1: the same tensor, the crop bit-identical
        x = torch.rand(1, 3, h, w)
        assert score_ops.central_region(x) is x


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.bool])
def test_other_dtypes_become_float32_once(dtype):
    x = torch.rand(1, 8, 8, 3).to(dtype)
    out = image_input("image", x)
    assert out.dtype == torch.float32 and torch.equal(out, x.float())


def test_float32_passes_as_the_same_tensor_and_integers_are_refused():
    x = torch.rand(1, 8, 8, 3)
    mask = x[..., 0]
    assert image_input("image", x) is x and as_float32("mask", mask, "MASK") is mask
    with pytest.raises(VMDiffInputError, match=r"^image: a IMAGE of uint8 values; .*divide by 255"):
        image_input("image", (x * 255).to(torch.uint8))
