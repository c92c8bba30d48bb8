"""The Scorer's two CLIP text towers (VMDiff Load OpenCLIP, VMDiff CLIP from ComfyUI)
count a label's tokens alike and both refuse a label their window would cut, by name, instead of reading its first
77 tokens silently. The towers are those of tests/nodes/test_score_clip_comfy.py (one random OpenCLIP stand-in
written in
both layouts)."""
import pytest
import torch

from tests.nodes.test_score_clip_comfy import TEXTS, comfy_clip, comfy_towers, files, reference  # noqa: F401
from vmdiff_pack.nodes.similarity_score import VMDiffScorer
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.scoring.dino import DinoEncoder
from vmdiff_pack.vmdiff_ops import score as score_ops


def test_both_towers_count_label_tokens_alike(reference, comfy_clip):
    for text in TEXTS + [score_ops.label_text("owl " * n, "official") for n in (60, 68, 69, 70, 71, 200)]:
        (total, window), (comfy_total, comfy_window) = reference.text_token_count(text), \
            comfy_clip.text_token_count(text)
        assert total == comfy_total, text
        assert (total > window) == (comfy_total > comfy_window), (text, window, comfy_window)
    assert reference.text_token_count("['A  owl .']") == (7, 75)


@pytest.fixture(scope="module")
def dino():
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    return DinoEncoder(Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)), "tiny")


@pytest.mark.parametrize("label_2, mode, over", [("word " * 80, "plain", 5), ("owl " * 70, "official", 1),
                                                 ("owl " * 2500, "reference", 2427)])
def test_the_scorer_refuses_a_label_either_tower_would_cut(reference, comfy_clip, dino, label_2, mode, over):
    sources = [torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)]
    for clip in (reference, comfy_clip):
        calls = clip.text_calls
        with pytest.raises(VMDiffInputError, match=rf"^label_2: too long by {over} CLIP tokens .*label_text "
                                                   rf"'{mode}'.* 75 is all the CLIP window reads"):
            VMDiffScorer.execute(dino, clip, *sources, "owl", label_2, isolation="none", label_text=mode)
        assert clip.text_calls == calls  # refused before any text was encoded
    fits = "owl " * 75 if mode == "plain" else "owl " * 69  # the longest that fits: accepted by both
    for clip in (reference, comfy_clip):
        VMDiffScorer.execute(dino, clip, *sources, "owl", fits, isolation="none", label_text=mode)
