"""The original release files, mapped onto transformers by the pack's documented key maps, compute what the original
implementations compute: random-weight stand-ins built with groundingdino-py and segment-anything (test-only
dependencies), loaded by the pack's loaders, same logits / boxes / masks to <= 1e-4."""
from pathlib import Path

import pytest
import torch


import folder_paths

from vmdiff_cli import tiny_scorers
from vmdiff_pack.vmdiff_comfy.scoring import detection, files, segmentation
from vmdiff_pack.vmdiff_ops import score as score_ops

NAMES = tiny_scorers.TINY_SCORER_NAMES
CAPTION = "most prominent object."


@pytest.fixture(scope="module")
def models_dir():
    root = tiny_scorers.default_models_dir()
    tiny_scorers.ensure_tiny_scorers(root)
    for kind in ("grounding-dino", "bert-base-uncased", "sams"):
        folder_paths.add_model_folder_path(kind, str(root / kind))
    return root


def detector_input(seed=0, h=96, w=128, short_side=160):
    images = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    x = torch.nn.functional.interpolate(images, size=score_ops.grounding_resize_shape(h, w, short_side),
                                        mode="bilinear", align_corners=False, antialias=True)
    return images, score_ops.normalise_pixels(x, score_ops.IMAGENET_MEAN, score_ops.IMAGENET_STD)


def compare_detection(original, hf_model, tokenizer, x):
    """Run both on the same pixels and caption; logits (finite part and -inf mask) and boxes agree to 1e-4."""
    with torch.inference_mode():
        ref = original(x, captions=[CAPTION] * len(x))
        text = tokenizer([CAPTION] * len(x), return_tensors="pt")
        out = hf_model(pixel_values=x, **text)
    ref_logits, logits = ref["pred_logits"], out.logits
    assert logits.shape == ref_logits.shape
    assert torch.equal(torch.isfinite(logits), torch.isfinite(ref_logits))
    finite = torch.isfinite(ref_logits)
    torch.testing.assert_close(logits[finite], ref_logits[finite], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.pred_boxes, ref["pred_boxes"], atol=1e-4, rtol=0)
    return ref


def test_grounding_dino_release_file_gives_the_original_boxes(models_dir):
    """The tiny release-format stand-in (.cfg.py + .pth), through VMDiff Load GroundingDINO's loader."""
    root = models_dir / "grounding-dino"
    original = tiny_scorers.build_original_grounding_dino(
        detection.parse_literal_config(root / NAMES["grounding_dino_config"]),
        models_dir / "bert-base-uncased" / NAMES["bert"])
    original.load_state_dict(torch.load(root / NAMES["grounding_dino"], weights_only=True)["model"])
    ours = detection.load_grounding_dino(NAMES["grounding_dino_config"], NAMES["grounding_dino"], NAMES["bert"])
    assert type(ours.ready()).__name__ == "GroundingDinoForObjectDetection"
    images, x = detector_input()
    ref = compare_detection(original, ours.ready(), ours.processor.tokenizer, x)
    # the isolation rule end to end: the reference's top-1 box on the real size, from the original outputs
    h, w = images.shape[-2:]
    for threshold in (0.0, float(ref["pred_logits"].sigmoid().amax(-1).median())):
        found = ours.detect(images, CAPTION, box_threshold=threshold, nms_iou=0.8, short_side=160)
        for (box, conf), logits, boxes in zip(found, ref["pred_logits"], ref["pred_boxes"]):
            scores = logits.sigmoid().amax(-1)
            expected = score_ops.select_box(scores, score_ops.boxes_to_pixels(boxes, w, h), threshold, 0.8)
            torch.testing.assert_close(box, expected[0], atol=1e-3, rtol=0)
            assert conf == pytest.approx(expected[1], abs=1e-5)


def test_grounding_dino_builtin_config_is_the_release_config(models_dir):
    """The full SwinT-OGC architecture (the release's GroundingDINO_SwinT_OGC.py; tiny BERT), once: the built-in
    config equals the release file's values and the key map covers every tensor of the full model."""
    from transformers import BertConfig, GroundingDinoForObjectDetection

    release = tiny_scorers.original_grounding_dino_config()
    assert {k: release[k] for k in detection.SWINT_OGC} == detection.SWINT_OGC
    bert = models_dir / "bert-base-uncased" / NAMES["bert"]
    with torch.random.fork_rng():
        torch.manual_seed(1)
        original = tiny_scorers.build_original_grounding_dino(release, bert)
    config = detection.hf_config(detection.original_config(detection.BUILTIN_GDINO_CONFIG),
                                 BertConfig.from_pretrained(str(bert)), "built-in")
    hf = files.from_pretrained(GroundingDinoForObjectDetection, "grounding-dino", Path("groundingdino_swint_ogc.pth"),
                               config=config, state_dict=detection.apply_key_map(original.state_dict(),
                                                                                 detection.ORIGINAL_TO_HF))
    from transformers import AutoTokenizer

    # float64: 900 of ~1200 random-weight proposals are picked by top-k, whose near-ties float32 noise can reorder
    x = detector_input(1, 64, 64, 240)[1].double()  # 240² px: >= 900 image tokens
    compare_detection(original.double(), hf.double(), AutoTokenizer.from_pretrained(str(bert)), x)


def test_sam_release_file_gives_the_original_masks(models_dir):
    original = tiny_scorers.build_original_sam(tiny_scorers.TINY_SAM_CONFIG)
    original.load_state_dict(torch.load(models_dir / "sams" / NAMES["sam"], weights_only=True))
    ours = segmentation.load_sam(NAMES["sam"])
    assert type(ours.ready()).__name__ == "SamModel" and ours.info["format"] == "original release"
    g = torch.Generator().manual_seed(3)
    images, boxes = torch.rand(2, 3, 48, 80, generator=g), [[10.0, 5.0, 60.0, 40.0], [0.0, 8.0, 30.0, 47.0]]
    inputs = ours.processor(images=list(images), input_boxes=[[b] for b in boxes], do_rescale=False,
                            return_tensors="pt")
    with torch.inference_mode():
        out = ours.ready()(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"],
                           multimask_output=False)
        embeddings = original.image_encoder(inputs["pixel_values"])
        for i in range(len(images)):
            sparse, dense = original.prompt_encoder(points=None, boxes=inputs["input_boxes"][i], masks=None)
            low_res, iou = original.mask_decoder(embeddings[i:i + 1], original.prompt_encoder.get_dense_pe(), sparse,
                                                 dense, multimask_output=False)
            torch.testing.assert_close(out.pred_masks[i, 0], low_res[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(out.iou_scores[i, 0], iou[0], atol=1e-4, rtol=0)
            size = tuple(inputs["reshaped_input_sizes"][i].tolist())
            expected = original.postprocess_masks(low_res, size, (48, 80))[0] > original.mask_threshold
            got = ours.segment(images[i:i + 1], [boxes[i]])[0]
            assert got.shape == expected.shape == (1, 48, 80)
            assert (got != expected).float().mean() < 1e-3  # only pixels whose logit is ~0 may flip


@pytest.mark.parametrize("variant", ["vit_b", "vit_l", "vit_h"])
def test_sam_release_architectures_map_onto_transformers(variant):
    """Each released SAM: its architecture is read off the tensor shapes and the key map gives exactly the tensors
    (names and shapes) of the transformers SamModel of that architecture (on the meta device: no weights)."""
    from segment_anything import sam_model_registry
    from transformers import SamModel

    with torch.device("meta"):
        reference = sam_model_registry[variant]()
    sd = reference.state_dict()
    config = segmentation.sam_config_from_state_dict(sd)
    expected = {"vit_b": (768, 12, 12, [2, 5, 8, 11]), "vit_l": (1024, 24, 16, [5, 11, 17, 23]),
                "vit_h": (1280, 32, 16, [7, 15, 23, 31])}[variant]
    assert (config["embed_dim"], config["depth"], config["num_heads"], config["global_attn_indexes"]) == expected
    assert config["variant"] == variant and config["img_size"] == 1024 and config["window_size"] == 14
    with torch.device("meta"):
        hf = SamModel(segmentation.hf_sam_config(config))
    mapped = segmentation.apply_key_map(sd, segmentation.ORIGINAL_TO_HF)
    shared = mapped["prompt_encoder.shared_embedding.positional_embedding"]
    mapped["shared_image_embedding.positional_embedding"] = shared
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in hf.state_dict().items()}
