"""Non-finite values and over-long labels in the nodes, in-process on ComfyUI's real classes: the Auto-Tune plots never
crash on non-finite scores or images; Fusion Prompt measures each label with the real CLIP tokenizer, whatever the
script, and names the input that overflows and by how many tokens."""
import math
import re

import numpy as np
import pytest
import torch

from vmdiff_cli.comfy_env import load_pack

pack = load_pack()
from vmdiff_cli import tiny_models

from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.stages.plots import candidate_grid, search_plot, to_pil
from vmdiff_pack.nodes.prompt import VMDiffFusionPrompt
from vmdiff_pack.vmdiff_comfy.stages.prompt import DEFAULT_TEMPLATE, clip_l_token_count


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


# --- kind 1 in the nodes: a model that returns NaN; kind 4: conditioning of the wrong text encoder ---
from vmdiff_pack.nodes.auto_tune import VMDiffAutoTune
from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
from vmdiff_pack.nodes.magicmix import VMDiffMagicMix
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
from vmdiff_pack.nodes.similarity_score import VMDiffSimilarityScore

STAGE = dict(width=32, height=32, steps=6, t_den_step=2)


class NaNAfter:
    """A ComfyUI model wrapper (the DiT's own model_function_wrapper hook) whose DiT passes listed in ``bad``
    (1-based) return NaN, like an fp16/fp8 Flux that overflowed."""

    def __init__(self, model, bad=lambda call: True):
        self.model, self.bad, self.calls = model.clone(), bad, 0
        self.model.set_model_unet_function_wrapper(self)

    def __call__(self, apply_model, args):
        self.calls += 1
        out = apply_model(args["input"], args["timestep"], **args["c"])
        return out * math.nan if self.bad(self.calls) else out


class FiniteOnlyScorer:
    """Scores like the real scorer: refuses non-finite images (so a NaN candidate must never reach it)."""

    def __init__(self):
        self.calls = 0

    def score(self, images):
        assert torch.isfinite(images).all(), "a non-finite image reached the scorer"
        out = []
        for _ in range(images.shape[0]):
            self.calls += 1
            out.append({"score": 1.0 + 0.01 * self.calls, "D1": 0.5, "D2": 0.4, "T1": 0.3, "T2": 0.3, "n1": 0.5,
                        "n2": 0.5})
        return out


@pytest.fixture(scope="module")
def flux():
    cv, style = tiny_models.tiny_clip_vision(seed=0), tiny_models.tiny_style_model(seed=0)
    tokens = [VMDiffReduxEncode.execute(cv, style, torch.rand(1, 40, 40, 3, generator=torch.Generator()
                                                              .manual_seed(s))).result[0] for s in (1, 2)]
    return {"model": tiny_models.tiny_flux(seed=0), "tokens": tokens, "cond": tiny_models.tiny_flux_conditioning(),
            "text": tiny_models.tiny_flux_conditioning(seed=1, text_tokens=4), "vae": tiny_models.tiny_vae(seed=0)}


def test_blending_noise_names_itself_the_pass_and_the_fix_when_the_model_returns_nan(flux):
    nan = NaNAfter(flux["model"], lambda call: call >= 3)
    with pytest.raises(VMDiffInputError, match=r"^VMDiff Blending Noise: the model's prediction at model pass 3 of "
                                               r"6 \(denoise phase, σ = .*weight_dtype"):
        VMDiffBlendingNoise.execute(nan.model, *flux["tokens"], flux["cond"], seed=1, **STAGE)


def test_mixing_denoise_stops_instead_of_returning_a_nan_latent(flux):
    eps_b = VMDiffBlendingNoise.execute(flux["model"], *flux["tokens"], flux["cond"], seed=1, **STAGE).result[0]
    nan = NaNAfter(flux["model"], lambda call: call == 6)
    with pytest.raises(VMDiffInputError, match=r"^VMDiff Mixing Denoise: .* at model pass 6 of 6 \(mix phase.*"
                                               r"fp16/fp8 overflow"):
        VMDiffMixingDenoise.execute(nan.model, eps_b, *flux["tokens"], flux["cond"], steps=6)


def test_magicmix_stops_on_a_nan_model(flux):
    nan = NaNAfter(flux["model"])
    with pytest.raises(VMDiffInputError, match=r"^VMDiff MagicMix: the model's prediction at model pass 1 "):
        VMDiffMagicMix.execute(nan.model, flux["text"], seed=1, steps=6, width=32, height=32,
                               layout_image=torch.rand(1, 32, 32, 3), vae=flux["vae"])


def test_auto_tune_scores_a_nan_candidate_as_the_worst_and_finishes(flux):
    # candidate 1 = Blending Noise (6 passes) + Mixing Denoise (6 passes), candidate 2 = Mixing Denoise (6 passes):
    # candidate 2's returns NaN (a first candidate NaN at every pass stops the search)
    nan = NaNAfter(flux["model"], lambda call: 13 <= call <= 18)
    scorer = FiniteOnlyScorer()
    out = VMDiffAutoTune.execute(nan.model, *flux["tokens"], flux["cond"], flux["vae"], scorer, seed=3, **STAGE)
    image, *_, score, params, log, plot, grid = out.result
    import json

    records = json.loads(log.replace("NaN", "null"))["candidates"]
    assert records[1]["score"] is None and all(r["score"] is not None for i, r in enumerate(records) if i != 1)
    assert math.isfinite(score) and torch.isfinite(image).all() and torch.isfinite(plot).all()
    assert json.loads(params)["candidates"] == len(records) == scorer.calls + 1


def test_auto_tune_stops_when_every_candidate_is_nan(flux):
    nan = NaNAfter(flux["model"])
    with pytest.raises(VMDiffInputError, match=r"^VMDiff Auto-Tune: .*non-finite.*weight_dtype"):
        VMDiffAutoTune.execute(nan.model, *flux["tokens"], flux["cond"], flux["vae"], FiniteOnlyScorer(), seed=3,
                               **STAGE)


class NaNScorer:
    def score(self, images):
        return [{"score": math.nan, "D1": math.nan, "D2": 0.4, "T1": 0.3, "T2": 0.3, "n1": 0.5, "n2": 0.5}]


def test_similarity_score_names_itself_on_a_nan_score():
    with pytest.raises(VMDiffInputError, match=r"^VMDiff Similarity Score: the score has 1 NaN .*scorer model"):
        VMDiffSimilarityScore.execute(NaNScorer(), torch.rand(1, 32, 32, 3))


def clip_l_only(width=768, tokens=77, vec_dim=32):
    """What the pack's Fusion Prompt gives on a CLIP-L-only encoder: 768-wide text tokens (no T5-XXL)."""
    return [[torch.randn(1, tokens, width), {"pooled_output": torch.randn(1, vec_dim), "guidance": 3.5}]]


def test_magicmix_flux_text_content_from_clip_l_says_which_encoder_it_needs(flux):
    with pytest.raises(VMDiffInputError, match=r"^content: its text tokens are 768 wide \(CLIP-L .*\) but the model "
                                               r"takes 64: Flux text needs T5-XXL.*; or connect content_tokens"):
        VMDiffMagicMix.execute(flux["model"], clip_l_only(), seed=1, steps=6, width=32, height=32,
                               layout_image=torch.rand(1, 32, 32, 3), vae=flux["vae"])
    # content_tokens replace the text tokens: the same CLIP-L prompt then runs (its pooled vector is used)
    out = VMDiffMagicMix.execute(flux["model"], clip_l_only(), seed=1, steps=6, width=32, height=32,
                                 layout_image=torch.rand(1, 32, 32, 3), vae=flux["vae"],
                                 content_tokens=flux["tokens"][0]).result[0]
    assert torch.isfinite(out["samples"]).all()


@pytest.mark.parametrize("name, kwargs, message", [
    ("layout_conditioning", dict(layout_conditioning=clip_l_only(4096, vec_dim=32)), None),
    ("layout_conditioning", dict(layout_conditioning=clip_l_only(2048)), r"^layout_conditioning: its text tokens are "
                                                                          r"2048 wide \(CLIP-L \+ CLIP-G \(SDXL\)\)"),
    ("content pooled", dict(content=clip_l_only(64, vec_dim=1280)), r"^content: its pooled vector is 1280 wide"),
])
def test_every_magicmix_conditioning_is_checked_against_the_model(flux, name, kwargs, message):
    args = dict(content=flux["text"], seed=1, steps=6, width=32, height=32, layout_conditioning=flux["text"])
    args.update(kwargs)
    model = flux["model"]
    if message is None:  # a T5-XXL-wide prompt on a model of context 4096 runs
        model = tiny_models.tiny_flux(seed=0, context_dim=4096)
        args["content"] = clip_l_only(4096)
        out = VMDiffMagicMix.execute(model, **args).result[0]
        assert torch.isfinite(out["samples"]).all()
        return
    with pytest.raises(VMDiffInputError, match=message):
        VMDiffMagicMix.execute(model, **args)


def test_magicmix_sd15_negative_of_another_encoder_is_named():
    sd15 = tiny_models.tiny_sd15(seed=0)
    good = tiny_models.tiny_sd15_conditioning(seed=1)
    width = good[0][0].shape[-1]
    wrong = [[torch.randn(1, 77, width * 2), {}]]
    with pytest.raises(VMDiffInputError, match=rf"^negative: its text tokens are {width * 2} wide .* the model takes "
                                               rf"{width}: SD15 text needs"):
        VMDiffMagicMix.execute(sd15, good, seed=1, steps=6, cfg=5.0, negative=wrong, layout_conditioning=good,
                               width=32, height=32)


def test_text_and_redux_context_with_clip_l_text_says_t5_or_redux_only(flux):
    with pytest.raises(VMDiffInputError, match=r"^conditioning: its text tokens are 768 wide .*Flux text needs "
                                               r"T5-XXL.*; or set context to redux_only"):
        VMDiffBlendingNoise.execute(flux["model"], *flux["tokens"], clip_l_only(), seed=1, context="text_and_redux",
                                    **STAGE)


# --- kind 10 in the nodes: messages that name what is actually wrong ---
from vmdiff_pack.nodes.mix_tokens_n import VMDiffMixTokensN
from vmdiff_pack.vmdiff_comfy.scoring.similarity import image_to_bchw


@pytest.fixture(scope="module")
def three_sets(flux):
    cv, style = tiny_models.tiny_clip_vision(seed=0), tiny_models.tiny_style_model(seed=0)
    z3 = VMDiffReduxEncode.execute(cv, style, torch.rand(1, 40, 40, 3, generator=torch.Generator()
                                                         .manual_seed(3))).result[0]
    sinp, scat = VMDiffMixTokensN.execute(*flux["tokens"], tokens_3=z3).result
    return sinp, scat, z3


def test_mix_tokens_concat_plus_a_second_set_says_leave_tokens_2_unconnected(flux, three_sets):
    sinp, scat, z3 = three_sets
    with pytest.raises(VMDiffInputError) as caught:
        VMDiffBlendingNoise.execute(flux["model"], scat, z3, flux["cond"], seed=1, **STAGE)
    text = str(caught.value)
    assert text.startswith("tokens_1: is already the SCat (concat) of tokens_1, tokens_2, tokens_3")
    assert "leave tokens_2 unconnected" in text and "different" not in text


@pytest.mark.parametrize("case", ["SInp in tokens_1", "SInp in tokens_2", "SCat in tokens_2"])
def test_every_ready_set_beside_a_second_set_is_named(flux, three_sets, case):
    """The SInp has the very shape of one image's set: without the check it was silently mixed again."""
    sinp, scat, z3 = three_sets
    t1, t2, name = {"SInp in tokens_1": (sinp, z3, "tokens_1"), "SInp in tokens_2": (z3, sinp, "tokens_2"),
                    "SCat in tokens_2": (z3, scat, "tokens_2")}[case]
    eps = VMDiffBlendingNoise.execute(flux["model"], *flux["tokens"], flux["cond"], seed=1, **STAGE).result[0]
    with pytest.raises(VMDiffInputError, match=rf"^{name}: is already the S(Inp|Cat) .*leave tokens_2 unconnected"):
        VMDiffMixingDenoise.execute(flux["model"], eps, t1, t2, flux["cond"], steps=6)


def test_mix_tokens_n_fed_a_concat_names_it_not_a_different_encoder(flux, three_sets):
    _, scat, _ = three_sets
    with pytest.raises(VMDiffInputError) as caught:
        VMDiffMixTokensN.execute(flux["tokens"][0], scat)
    assert str(caught.value).startswith("tokens_2: is already the SCat (concat)") and " vs " not in str(caught.value)


EMPTY = {"0×0 image": torch.zeros(1, 0, 0, 3), "0-wide image": torch.zeros(1, 32, 0, 3),
         "empty batch": torch.zeros(0, 32, 32, 3)}


@pytest.mark.parametrize("case", EMPTY)
def test_empty_images_are_named_by_input(flux, case):
    image = EMPTY[case]
    expected = "an empty batch" if case == "empty batch" else "pixels \\(empty\\)"
    cv, style = tiny_models.tiny_clip_vision(seed=0), tiny_models.tiny_style_model(seed=0)
    with pytest.raises(VMDiffInputError, match=f"^image: .*{expected}"):
        VMDiffReduxEncode.execute(cv, style, image)
    with pytest.raises(VMDiffInputError, match=f"^layout_image: .*{expected}"):
        VMDiffMagicMix.execute(flux["model"], flux["text"], seed=1, steps=6, layout_image=image, vae=flux["vae"])
    for name in ("image_1", "images"):  # what VMDiff Scorer and Similarity Score read their images with
        with pytest.raises(VMDiffInputError, match=f"^{name}: .*{expected}"):
            image_to_bchw(image, name)
