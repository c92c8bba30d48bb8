"""vmdiff_ops.score against hand-computed values (docs/method.md, "Similarity Score S"); no ComfyUI involved."""
import math

import pytest
import torch
from torchvision.ops import box_iou

from vmdiff_pack.vmdiff_ops.score import (IMAGENET_MEAN, IMAGENET_STD, balanced_sum, boxes_to_pixels,
                                          center_crop_resize, cosine_similarity,
                              crop_bounds, crop_to_box, grounding_resize_shape, mean_token_feature, neutral_fill,
                              normalise_pixels, normalise_text_similarity, select_box, similarity_score, squash_resize)


def unit(deg):
    return torch.tensor([math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0])


def test_score_term_by_term_on_fixed_embeddings():
    # DINO features: the fused image's feature against each source's; CLIP: fused image against each label's text.
    dino_fused = torch.tensor([[3.0, 0.0, 0.0]])           # norm is irrelevant to a cosine
    dino_src1, dino_src2 = torch.tensor([[0.6, 0.8, 0.0]]), torch.tensor([[0.8, 0.0, 0.6]])
    clip_img = torch.tensor([[0.0, 0.0, 2.0]])
    clip_txt1 = torch.tensor([[math.sqrt(1 - 0.33 ** 2), 0.0, 0.33]])
    clip_txt2 = torch.tensor([[0.0, math.sqrt(1 - 0.30 ** 2), 0.30]])
    d1, d2 = cosine_similarity(dino_fused, dino_src1), cosine_similarity(dino_fused, dino_src2)
    t1, t2 = cosine_similarity(clip_img, clip_txt1), cosine_similarity(clip_img, clip_txt2)
    r = similarity_score(d1, d2, t1, t2)
    expected = {"D1": 0.6, "D2": 0.8, "T1": 0.33, "T2": 0.30,
                "n1": (0.33 - 0.15) / 0.30, "n2": (0.30 - 0.15) / 0.30,  # 0.6, 0.5
                "score": 0.6 + 0.8 + 0.6 + 0.5 - abs(0.6 - 0.8) - abs(0.6 - 0.5)}  # 2.2
    for key, value in expected.items():
        assert r[key].shape == (1,) and r[key].dtype == torch.float32
        assert r[key].item() == pytest.approx(value, abs=1e-6), key
    assert r["score"].item() == pytest.approx(2 * 0.6 + 2 * 0.5, abs=1e-6)
    # the spec's closed form: 2·min D + (20/3)·min T − 1
    assert r["score"].item() == pytest.approx(2 * 0.6 + 20 / 3 * 0.30 - 1, abs=1e-6)


def test_score_is_twice_the_weaker_sides_batchwise():
    g = torch.Generator().manual_seed(0)
    d1, d2 = torch.rand(64, generator=g) * 2 - 1, torch.rand(64, generator=g) * 2 - 1
    t1, t2 = torch.rand(64, generator=g) * 0.5, torch.rand(64, generator=g) * 0.5
    r = similarity_score(d1, d2, t1, t2)
    n1, n2 = (t1 - 0.15) / 0.3, (t2 - 0.15) / 0.3
    assert torch.allclose(r["score"], 2 * torch.minimum(d1, d2) + 2 * torch.minimum(n1, n2), atol=1e-6)
    assert torch.allclose(r["n1"], n1) and torch.allclose(r["n2"], n2)
    # symmetric in the two sides, and raising the stronger side changes nothing
    swapped = similarity_score(d2, d1, t2, t1)["score"]
    assert torch.allclose(swapped, r["score"])
    stronger = torch.maximum(d1, d2) + 0.1
    assert torch.allclose(similarity_score(torch.minimum(d1, d2), stronger, t1, t2)["score"], r["score"], atol=1e-6)


def test_threshold_example_of_the_spec_and_custom_bounds():
    # min D = 0.6 with min T = 0.33 gives 2.4, the reference's early-stop threshold
    assert similarity_score(0.6, 0.9, 0.33, 0.40)["score"].item() == pytest.approx(2.4, abs=1e-6)
    assert normalise_text_similarity(torch.tensor(0.3), 0.1, 0.5).item() == pytest.approx(0.5)
    assert similarity_score(0.5, 0.5, 0.3, 0.3, t_low=0.1, t_high=0.5)["score"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="t_high"):
        normalise_text_similarity(torch.tensor(0.3), 0.5, 0.5)
    assert balanced_sum(torch.tensor(0.2), torch.tensor(0.7)).item() == pytest.approx(0.4)


def test_cosine_is_batchwise_and_broadcasts_a_single_reference():
    a = torch.stack([unit(0), unit(60), unit(90)])
    cos = cosine_similarity(a, unit(0)[None])
    assert torch.allclose(cos, torch.tensor([1.0, 0.5, 0.0]), atol=1e-6)


def test_mean_token_feature_includes_cls():
    h = torch.arange(12, dtype=torch.float32).view(1, 4, 3)  # CLS + 3 patches
    assert torch.equal(mean_token_feature(h), torch.tensor([[4.5, 5.5, 6.5]]))


def test_squash_resize_ignores_aspect_and_keeps_range():
    img = torch.zeros(2, 3, 50, 200)
    img[:, :, :, 100:] = 1.0  # right half white
    out = squash_resize(img, 224)
    assert out.shape == (2, 3, 224, 224)
    assert out.min() >= 0 and out.max() <= 1
    assert out[0, 0, 112, :100].max() < 0.05 and out[0, 0, 112, 124:].min() > 0.95  # halves stay halves: no crop
    assert torch.allclose(squash_resize(torch.full((1, 3, 30, 30), 0.25), 224), torch.tensor(0.25), atol=1e-6)


def test_normalise_pixels_imagenet():
    img = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(normalise_pixels(img, IMAGENET_MEAN, IMAGENET_STD), torch.zeros(1, 3, 2, 2), atol=1e-7)
    one = normalise_pixels(torch.ones(1, 3, 1, 1), IMAGENET_MEAN, IMAGENET_STD).flatten()
    assert torch.allclose(one, torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]))


def test_boxes_scale_to_the_real_image_size():
    box = torch.tensor([[0.5, 0.25, 0.5, 0.5]])  # centre (0.5, 0.25), half the width and height
    assert boxes_to_pixels(box, 512, 512).tolist() == [[128.0, 0.0, 384.0, 256.0]]
    assert boxes_to_pixels(box, 1024, 768).tolist() == [[256.0, 0.0, 768.0, 384.0]]  # not the reference's 512


def test_crop_truncates_like_the_reference_and_clamps():
    img = torch.arange(3 * 10 * 20, dtype=torch.float32).view(3, 10, 20)
    assert crop_bounds([2.9, 1.7, 12.99, 8.2], 20, 10) == (2, 1, 12, 8)
    assert torch.equal(crop_to_box(img, torch.tensor([2.9, 1.7, 12.99, 8.2])), img[:, 1:8, 2:12])
    assert crop_bounds([-5.0, -1.0, 30.0, 40.0], 20, 10) == (0, 0, 20, 10)
    assert crop_bounds([5.0, 5.0, 5.5, 9.0], 20, 10) is None  # no pixel: the full image is used
    assert crop_to_box(img, None) is img and crop_to_box(img, [5.0, 5.0, 5.5, 9.0]) is img


def test_select_box_threshold_nms_top1():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 10, 10], [20, 20, 40, 40], [0, 0, 5, 5]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.7, 0.2])
    box, conf = select_box(scores, boxes, box_threshold=0.25, nms_iou=0.8)
    assert box.tolist() == [1, 0, 10, 10] and conf == pytest.approx(0.9)
    assert select_box(scores, boxes, box_threshold=0.95) is None
    assert select_box(scores[:1], boxes[:1], box_threshold=0.5) is None  # strictly above the threshold
    assert box_iou(boxes[:1], boxes[1:2]).item() == pytest.approx(0.9)
    assert box_iou(boxes[:1], boxes[2:3]).item() == 0.0


def test_neutral_fill_replaces_background_only():
    img = torch.rand(3, 4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    out = neutral_fill(img, mask)
    assert torch.equal(out[:, 1:3, 1:3], img[:, 1:3, 1:3])
    assert torch.all(out[:, 0] == 0.5) and torch.all(out[:, :, 3] == 0.5)
    batch = neutral_fill(torch.rand(2, 3, 4, 4), mask[None, None].expand(2, 1, 4, 4), fill=(0.0, 1.0, 0.0))
    assert torch.all(batch[:, 1, 0, 0] == 1.0) and torch.all(batch[:, 0, 0, 0] == 0.0)


def test_grounding_resize_shape():
    assert grounding_resize_shape(512, 512) == (800, 800)
    assert grounding_resize_shape(600, 800) == (800, 1066)
    assert grounding_resize_shape(400, 800) == (666, 1332)  # long side capped at 1333
    assert grounding_resize_shape(1000, 500) == (1332, 666)


def test_center_crop_resize_keeps_the_middle():
    img = torch.zeros(1, 3, 100, 300)
    img[..., 100:200] = 1.0  # the middle third is white
    out = center_crop_resize(img, 224, 224)
    assert out.shape == (1, 3, 224, 224)
    assert out[0, 0, 112, 20:204].min() > 0.95  # the crop sees only the white middle
    assert center_crop_resize(torch.rand(2, 3, 40, 30), 224, 256).shape == (2, 3, 224, 224)


def test_label_text_modes_reproduce_the_reference_strings():
    from vmdiff_pack.vmdiff_ops.score import label_text

    assert label_text("astronaut figurine") == "['A  astronaut figurine .']"
    assert label_text("owl", "reference") == "A  owl ."
    assert label_text("owl", "plain") == "owl"
    assert label_text("it's", "official") == '["A  it\'s ."]'  # str(list) switches quotes, as Python does
    with pytest.raises(ValueError, match="label text mode"):
        label_text("owl", "fancy")
