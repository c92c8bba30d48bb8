"""Issue 12 kinds 1 and 5 in the nodes, in-process on ComfyUI's real classes: the Auto-Tune plots never crash on
non-finite scores or images; Fusion Prompt measures each label with the real CLIP tokenizer, whatever the script, and
names the input that overflows and by how many tokens."""
import math
import re

import numpy as np
import pytest
import torch

from tools.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
pack = load_pack()
from tools import tiny_models  # noqa: E402

from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError  # noqa: E402
from vmdiff_pack.nodes.plots import candidate_grid, search_plot, to_pil  # noqa: E402
from vmdiff_pack.nodes.prompt import DEFAULT_TEMPLATE, VMDiffFusionPrompt, clip_l_token_count  # noqa: E402


def record(i, score, stage="alpha", round_=1):
    return {"alpha": 0.4 + 0.01 * i, "beta_1": 1.0, "beta_2": 0.5 + 0.2 * i, "seed": 42, "score": score,
            "stage": stage, "round": round_, "searched_beta": 0.5 + 0.2 * i}


SCORE_SETS = {
    "NaN first": [math.nan, 1.0, 1.2, 0.9],
    "NaN in the middle": [1.0, math.nan, 1.2, 0.9],
    "+inf": [1.0, math.inf, 1.2, 0.9],
    "-inf": [1.0, -math.inf, 1.2, 0.9],
    "all NaN": [math.nan] * 4,
    "mixed non-finite only": [math.nan, math.inf, -math.inf, math.nan],
}


@pytest.mark.parametrize("threshold", [2.4, math.inf, math.nan])
@pytest.mark.parametrize("case", SCORE_SETS)
def test_search_plot_draws_non_finite_scores_without_crashing(case, threshold):
    scores = SCORE_SETS[case]
    records = [record(i, s, "alpha" if i < 2 else "beta") for i, s in enumerate(scores)]
    finite = [r for r in records if math.isfinite(r["score"])]
    best = max(finite, key=lambda r: r["score"]) if finite else records[0]
    plot = search_plot(records, best, threshold)
    assert plot.shape == (1, 360, 900, 3) and torch.isfinite(plot).all()
    # the × marks of the non-finite scores are drawn in red
    red = ((plot[0, ..., 0] > 0.7) & (plot[0, ..., 1] < 0.1)).sum().item()
    assert red > 0 or all(math.isfinite(s) for s in scores)


def test_search_plot_without_beta_stage_and_with_one_point():
    plot = search_plot([record(0, math.nan)], record(0, math.nan), 2.4)
    assert torch.isfinite(plot).all()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_candidate_grid_shows_non_finite_images(bad):
    images = [torch.rand(32, 32, 3), torch.full((32, 32, 3), bad), torch.rand(32, 32, 3)]
    images[2][5:9, 5:9] = bad
    grid = candidate_grid(images, ["S = nan", "S = 1.2", "S = inf"], best_index=1, tile=48)
    assert grid.shape == (1, 2 * 0 + 64, 3 * 48, 3) and torch.isfinite(grid).all()
    tile = np.asarray(to_pil(images[1]))
    assert (tile == (0 if bad != math.inf else 255)).all()  # NaN/−inf black, +inf white


# --- Fusion Prompt: every label measured with the tokenizer (kind 5) ------------------------------------------------
@pytest.fixture(scope="module")
def clip():
    return tiny_models.tiny_clip_l()


def prompt_error(clip, **labels) -> str:
    with pytest.raises(VMDiffInputError) as info:
        VMDiffFusionPrompt.execute(clip, **{"label_1": "owl", "label_2": "jar", **labels})
    return str(info.value)


LONG_LABELS = {  # script → a label that alone overflows the 75-token window
    "Chinese (40 characters)": "猫头鹰" * 13 + "罐",
    "Japanese": "ふくろうとガラスの瓶とネコ" * 4,
    "emoji": "🦉🏺" * 30,
    "Korean": "부엉이와 유리병 " * 12,
    "English words": "an old brass owl figurine " * 16,
}


@pytest.mark.parametrize("slot", ["label_1", "label_2"])
@pytest.mark.parametrize("script", LONG_LABELS)
def test_the_long_label_is_named_with_its_token_excess(clip, script, slot):
    label = LONG_LABELS[script]
    message = prompt_error(clip, **{slot: label})
    other = "label_2" if slot == "label_1" else "label_1"
    total = clip_l_token_count(clip, DEFAULT_TEMPLATE.replace("{T1}", label if slot == "label_1" else "owl")
                               .replace("{T2}", label if slot == "label_2" else "jar"))
    assert total > 75
    assert message.startswith(f"{slot}: too long by {total - 75} CLIP tokens")
    assert f"{slot} {clip_l_token_count(clip, label)}," in message and f"{other} 1," in message
    assert "template:" not in message and f"shorten {slot} by at least {total - 75} tokens" in message


def test_chinese_label_of_the_report_is_about_110_tokens(clip):
    label = "猫头鹰" * 13 + "罐"
    assert len(label) == 40 and 90 <= clip_l_token_count(clip, label) <= 130
    assert len(clip.tokenize(label)["l"]) == 2


def test_two_long_labels_are_both_named(clip):
    half = "猫头鹰" * 7  # ~56 tokens each: neither alone overflows by more than it holds
    message = prompt_error(clip, label_1=half, label_2=half[::-1])
    assert message.startswith("label_1 and label_2: too long by") and "shorten label_1 or label_2" in message


def test_a_long_template_is_named(clip):
    template = "A photo of {T1} creatively fused with {T2}, " + "in a richly detailed studio scene " * 14
    with pytest.raises(VMDiffInputError, match=r"^template: too long by \d+ CLIP tokens"):
        VMDiffFusionPrompt.execute(clip, "owl", "jar", template)


@pytest.mark.parametrize("label", ["猫头鹰", "ふくろう", "🦉", "부엉이", "Charizard figurine", "owl " * 30])
def test_labels_that_fit_are_encoded(clip, label):
    out = VMDiffFusionPrompt.execute(clip, label, "jar")
    assert out.result[1] == f"A photo of {label.strip()} creatively fused with jar."
    assert torch.isfinite(out.result[0][0][1]["pooled_output"]).all()


def test_token_counts_come_from_the_tokenizer_not_the_characters(clip):
    assert clip_l_token_count(clip, "owl") == 1
    assert clip_l_token_count(clip, "🦉") > 1 and clip_l_token_count(clip, "猫头鹰") > 3  # several per character
    assert clip_l_token_count(clip, "a" * 300) < 300 and re.match(r"^\d+$", str(clip_l_token_count(clip, "")))
