"""Faults of round 3 (labels, prompts, dtypes and shapes, non-finite models) through one real server, as a user
meets them: labels that are not what
they look like, a CONDITIONING of more than one prompt, tensors of another dtype or an extreme shape, a model that
returns NaN inside Auto-Tune. Each kind is tried with several members; after each case the server must run a valid
prompt (checked at the end of each group, and by the next case's own success where one is expected).

The server, its tiny stand-in models and the workflow helpers are those of tests/server/test_reliability.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.test_reliability import (Case, add, matrix, nid, outcome, server, set_input, tiny_workflow,  # noqa: F401
                                    uploaded, valid_prompt, _seed)

pytestmark = pytest.mark.slow


def run_case(server, uploaded, matrix, case: Case) -> str:
    api = tiny_workflow(case.workflow, uploaded, seed=next(_seed))
    case.mutate(api)
    got, message = outcome(server, api)
    matrix.append((case.name, got, message.replace("\n", " ")))
    print(f"{case.name} → {got}: {message[:400]}")
    assert got == case.expect, message
    for part in case.says:
        assert part in message, message
    return message


def check_server_goes_on(server, uploaded):
    assert server.run(valid_prompt(uploaded), timeout=300)["status"]["status_str"] == "success"


# --------------------------------------------------------------------------------------------------
# kind 2: labels that are not what they look like

INVISIBLE_LABELS = {"zero-width space U+200B": "\u200b", "BOM U+FEFF": "\ufeff", "NBSP only": "\xa0\xa0",
                    "tabs and newlines": "\t\n\t", "RTL / LTR marks": "\u200f\u200e",
                    "ZWSP around a space": "\u200b \u200b"}

LABEL_CASES = [
    *(Case(f"Fusion Prompt label_1 of {what}", set_input("VMDiffFusionPrompt", label_1=text), "failed",
           ("label_1: the object label is empty", "invisible characters", "visible words"))
      for what, text in INVISIBLE_LABELS.items()),
    *(Case(f"Scorer label_2 of {what}", set_input("VMDiffScorer", label_2=text), "failed",
           ("label_2: the object label is empty", "visible words"), "vmdiff_manual_scored")
      for what, text in list(INVISIBLE_LABELS.items())[::2]),
    # placeholders inside a label are text, the template is filled once
    *(Case(f"label_1 = {text!r} (kept as written)", set_input("VMDiffFusionPrompt", label_1=text), "handled",
           (f"A photo of {text} creatively fused with jar.",))
      for text in ("{T2}", "{T1}", "{}", "%s", "{T1} and {T2}")),
    Case("label_2 = '{T1}' (kept as written)", set_input("VMDiffFusionPrompt", label_2="{T1}"), "handled",
         ("A photo of owl creatively fused with {T1}.",)),
    Case("label_1 with a tab, an NBSP and a BOM inside / around", set_input("VMDiffFusionPrompt",
                                                                           label_1="\ufeffsnowy\towl\xa0glass\u200b"),
         "handled", ("A photo of snowy owl glass creatively fused with jar.",)),
    # one length rule wherever a CLIP reads a label: the Scorer's OpenCLIP refuses what it would cut
    Case("Scorer label_2 of 10 000 characters (OpenCLIP)", set_input("VMDiffScorer", label_2="jar " * 2500), "failed",
         ("label_2: too long by", "CLIP tokens", "the Scorer's CLIP text", "75 is all the CLIP window reads"),
         "vmdiff_manual_scored"),
    Case("Scorer label_1 of 40 Chinese characters (OpenCLIP)",
         set_input("VMDiffScorer", label_1="猫头鹰" * 13 + "罐"), "failed",
         ("label_1: too long by", "label_text 'official'"), "vmdiff_manual_scored"),
    Case("Scorer label_1 of 70 tokens ('plain' label text fits, 'official' does not)",
         set_input("VMDiffScorer", label_1="owl " * 70, label_text="official"), "failed",
         ("label_1: too long by",), "vmdiff_manual_scored"),
    Case("Scorer label_1 of 70 tokens, label_text plain (fits the window)",
         set_input("VMDiffScorer", label_1="owl " * 70, label_text="plain"), "handled", ("S = ",),
         "vmdiff_manual_scored"),
    Case("Fusion Prompt label_2 of 10 000 characters", set_input("VMDiffFusionPrompt", label_2="jar " * 2500), "failed",
         ("label_2: too long by 2434 CLIP tokens",)),
]


@pytest.mark.parametrize("case", LABEL_CASES, ids=[c.name for c in LABEL_CASES])
def test_labels(server, uploaded, matrix, case):
    run_case(server, uploaded, matrix, case)


def test_labels_server_goes_on(server, uploaded):
    check_server_goes_on(server, uploaded)


def test_folder_runner_refuses_invisible_file_names(tmp_path: Path):
    """The folder runner's labels are file names: a name of only invisible characters is an empty label, refused
    before any work; visible names with a BOM / NBSP around them are cleaned like the nodes' labels."""
    from PIL import Image

    from vmdiff_cli.folder_runner import RunnerError, find_objects

    for name in ("owl", "\ufeffjar\xa0", "\u200b"):
        Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / f"{name}.png")
    with pytest.raises(RunnerError, match="gives an empty label"):
        find_objects(tmp_path)
    (tmp_path / "\u200b.png").unlink()
    assert sorted(o["label"] for o in find_objects(tmp_path)) == ["jar", "owl"]


# --------------------------------------------------------------------------------------------------
# kind 3: a CONDITIONING that holds more than one prompt (or none, or more than a prompt)

def conditioning_into(class_type, name, make, also=None):
    """``class_type``'s CONDITIONING input ``name`` replaced by ``make(api, current link)``; ``also``: more inputs."""
    def mutate(api):
        inputs = api[nid(api, class_type)]["inputs"]
        inputs[name] = make(api, inputs[name])
        inputs.update(also or {})
    return mutate


def made_conditioning(api, link, mode):
    return add(api, "VMDiffTestConditioning", conditioning=link, mode=mode)


def combined(api, link):
    """ConditioningCombine of the prompt and a second Fusion Prompt (other labels): two entries."""
    prompt = api[nid(api, "VMDiffFusionPrompt")]["inputs"]
    other = add(api, "VMDiffFusionPrompt", clip=prompt["clip"], label_1="cat", label_2="cup",
                template=prompt["template"])
    return add(api, "ConditioningCombine", conditioning_1=link, conditioning_2=other)


def batch_2(api, link):
    return made_conditioning(api, link, "batch_2")


def empty(api, link):
    return made_conditioning(api, link, "empty")


def flux_text(api, link):
    return add(api, "VMDiffTestFluxText", conditioning=link, width=64)  # the tiny Flux's context width


def set_area(api, link):
    return add(api, "ConditioningSetArea", conditioning=link, width=64, height=64, x=0, y=0, strength=1.0)


def set_mask(api, link):
    mask = add(api, "SolidMask", value=1.0, width=32, height=32)
    return add(api, "ConditioningSetMask", conditioning=link, mask=mask, strength=1.0, set_cond_area="default")


def timestep_range(api, link):
    return add(api, "ConditioningSetTimestepRange", conditioning=link, start=0.2, end=0.8)


def flux_guidance(api, link):
    return add(api, "FluxGuidance", conditioning=link, guidance=2.5)


CONDITIONING_CASES = [
    Case("Blending Noise: a batch of 2 prompts", conditioning_into("VMDiffBlendingNoise", "conditioning", batch_2),
         "failed", ("conditioning: a batch of 2 prompts", "connect one prompt")),
    Case("Mixing Denoise (text_and_redux): a batch of 2 prompts (was: Sizes of tensors must match)",
         conditioning_into("VMDiffMixingDenoise", "conditioning", lambda api, link: batch_2(api, flux_text(api, link)),
                           {"context": "text_and_redux"}),
         "failed", ("conditioning: a batch of 2 prompts",)),
    Case("Blending Noise: 2 entries (ConditioningCombine)",
         conditioning_into("VMDiffBlendingNoise", "conditioning", combined), "failed",
         ("conditioning: the CONDITIONING holds 2 prompts", "ConditioningCombine", "connect one prompt")),
    Case("Mixing Denoise (text_and_redux): 2 entries (ConditioningCombine)",
         conditioning_into("VMDiffMixingDenoise", "conditioning", lambda api, link: flux_text(api, combined(api, link)),
                           {"context": "text_and_redux"}), "failed",
         ("conditioning: the CONDITIONING holds 2 prompts",)),
    Case("Auto-Tune: 2 entries (ConditioningCombine)", conditioning_into("VMDiffAutoTune", "conditioning", combined),
         "failed", ("conditioning: the CONDITIONING holds 2 prompts",), "vmdiff_full"),
    Case("Auto-Tune: a batch of 2 prompts", conditioning_into("VMDiffAutoTune", "conditioning", batch_2),
         "failed", ("conditioning: a batch of 2 prompts",), "vmdiff_full"),
    Case("Mixing Denoise: 0 entries", conditioning_into("VMDiffMixingDenoise", "conditioning", empty), "failed",
         ("conditioning: the CONDITIONING holds no prompt (0 entries)",)),
    Case("Blending Noise: ConditioningSetArea", conditioning_into("VMDiffBlendingNoise", "conditioning", set_area),
         "failed", ("conditioning: carries 'area' (from ConditioningSetArea)", "connect the prompt without")),
    Case("Mixing Denoise: ConditioningSetMask", conditioning_into("VMDiffMixingDenoise", "conditioning", set_mask),
         "failed", ("conditioning: carries 'mask' (from ConditioningSetMask)",)),
    Case("Blending Noise: ConditioningSetTimestepRange",
         conditioning_into("VMDiffBlendingNoise", "conditioning", timestep_range), "failed",
         ("conditioning: carries 'start_percent' (from ConditioningSetTimestepRange)",)),
    Case("Mixing Denoise: FluxGuidance (not refused: the node's own guidance applies, as CLIPTextEncodeFlux's)",
         conditioning_into("VMDiffMixingDenoise", "conditioning", flux_guidance), "handled", ("γ = 4",)),
    Case("MagicMix content_tokens: content of 2 entries",
         conditioning_into("VMDiffMagicMix", "content", combined), "failed",
         ("content: the CONDITIONING holds 2 prompts",), "vmdiff_magicmix_flux"),
    Case("MagicMix content_tokens: content of a batch of 2", conditioning_into("VMDiffMagicMix", "content", batch_2),
         "failed", ("content: a batch of 2 prompts",), "vmdiff_magicmix_flux"),
    Case("MagicMix text content: entries with different pooled widths",
         lambda api: (conditioning_into("VMDiffMagicMix", "content", lambda api, link: add(
             api, "ConditioningCombine", conditioning_1=flux_text(api, link),
             conditioning_2=made_conditioning(api, flux_text(api, link), "narrow_pooled")))(api),
                      api[nid(api, "VMDiffMagicMix")]["inputs"].pop("content_tokens")),
         "failed", ("content: its entries have pooled vectors of different widths",), "vmdiff_magicmix_flux"),
    Case("MagicMix text content: 2 entries of one encoder (ComfyUI applies both)",
         lambda api: (conditioning_into("VMDiffMagicMix", "content", lambda api, link: add(
             api, "ConditioningCombine", conditioning_1=flux_text(api, link),
             conditioning_2=flux_text(api, link)))(api),
                      api[nid(api, "VMDiffMagicMix")]["inputs"].pop("content_tokens")),
         "handled", ("MagicMix, layout from image",), "vmdiff_magicmix_flux"),
]


@pytest.mark.parametrize("case", CONDITIONING_CASES, ids=[c.name for c in CONDITIONING_CASES])
def test_conditioning_entries(server, uploaded, matrix, case):
    run_case(server, uploaded, matrix, case)


def test_conditioning_server_goes_on(server, uploaded):
    check_server_goes_on(server, uploaded)


# --------------------------------------------------------------------------------------------------
# kind 4: tensors of another dtype or an extreme shape, at every IMAGE / MASK / LATENT input

#: box isolation at a detector input the tiny GroundingDINO can take (its stride-64 level must be over 1×1; the real
#: model's default is 800)
BOX = {"isolation": "box", "detect_size": 128}
SHAPES = {"3000×1": (3000, 1), "1×3000": (1, 3000), "1×1": (1, 1), "5000×2": (5000, 2)}
DTYPES = ("float16", "bfloat16", "float64")


def made_image(api, width=64, height=64, dtype="float32"):
    return add(api, "VMDiffTestImage", seed=3, width=width, height=height, channels=3, batch=1, dtype=dtype)


def feed_image(class_type, name, **inputs):
    """``class_type``'s IMAGE input ``name`` fed by a test image; ``inputs``: more inputs of that node."""
    def make(width=64, height=64, dtype="float32"):
        def mutate(api):
            node = api[nid(api, class_type)]["inputs"]
            node[name] = made_image(api, width, height, dtype)
            node.update(inputs)
        return mutate
    return make


def save_image(width=64, height=64, dtype="float32"):
    def mutate(api):
        add(api, "VMDiffSaveImage", images=made_image(api, width, height, dtype),
            params=add(api, "PrimitiveString", value='{"alpha": 0.5}'), filename_prefix="vmdiff_round3")
    return mutate


def mask_from_image(width=64, height=64, dtype="float32"):
    def mutate(api):
        mask = add(api, "ImageToMask", image=made_image(api, width, height), channel="red")
        if dtype != "float32":
            mask = add(api, "VMDiffTestCast", value=mask, dtype=dtype)
        api[nid(api, "VMDiffMixingDenoise")]["inputs"].update(mask=mask, alpha_masked=0.2)
    return mutate


def cast_eps_b(dtype):
    def mutate(api):
        mixing = api[nid(api, "VMDiffMixingDenoise")]["inputs"]
        mixing["eps_b"] = add(api, "VMDiffTestCast", value=mixing["eps_b"], dtype=dtype)
    return mutate


def sam_isolation(width=64, height=64, dtype="float32"):
    def mutate(api):
        from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES
        scorer = api[nid(api, "VMDiffScorer")]["inputs"]
        scorer.update(BOX, isolation="sam", image_1=made_image(api, width, height, dtype),
                      sam=add(api, "VMDiffLoadSAM", checkpoint=TINY_SCORER_NAMES["sam"]))
    return mutate


# (what, mutate maker, workflow, what a handled run's texts show)
IMAGE_INPUTS = [
    ("Redux Encode image", feed_image("VMDiffReduxEncode", "image"), "vmdiff_manual", "z: 16 tokens"),
    ("Redux Encode image (center_crop)", feed_image("VMDiffReduxEncode", "image", resize="center_crop"),
     "vmdiff_manual", "z: 16 tokens"),
    ("Scorer image_1 (box isolation)", feed_image("VMDiffScorer", "image_1", **BOX), "vmdiff_manual_scored",
     "source 1"),
    ("Scorer image_1 (sam isolation)", sam_isolation, "vmdiff_manual_scored", "source 1"),
    ("Similarity Score images (box isolation)", lambda **kw: lambda api: (
        feed_image("VMDiffSimilarityScore", "images")(**kw)(api),
        api[nid(api, "VMDiffScorer")]["inputs"].update(BOX)), "vmdiff_manual_scored", "S = "),
    ("MagicMix layout_image", feed_image("VMDiffMagicMix", "layout_image"), "vmdiff_magicmix_flux", "MagicMix"),
    ("VMDiff Save Image images", save_image, "vmdiff_manual", ""),
    ("Mixing Denoise mask", mask_from_image, "vmdiff_manual", "α map"),
]

DTYPE_CASES = [Case(f"{what}: {dtype}", make(dtype=dtype), "handled", (shows,), workflow)
               for what, make, workflow, shows in IMAGE_INPUTS for dtype in DTYPES]
DTYPE_CASES += [Case(f"Mixing Denoise eps_b LATENT: {dtype}", cast_eps_b(dtype), "handled", ("α = 0.5",))
                for dtype in DTYPES]
DTYPE_CASES += [Case("Auto-Tune with bfloat16 source images (Scorer)", feed_image("VMDiffScorer", "image_1")(
    dtype="bfloat16"), "handled", ("best S",), "vmdiff_full")]


@pytest.mark.parametrize("case", DTYPE_CASES, ids=[c.name for c in DTYPE_CASES])
def test_dtypes(server, uploaded, matrix, case):
    run_case(server, uploaded, matrix, case)


#: inputs that cannot take a strip or a single pixel, and say so (by name, with the fix)
TOO_SMALL = {"MagicMix layout_image": ("layout_image:", "at least 16 pixels")}
SHAPE_CASES = []
for what, make, workflow, shows in IMAGE_INPUTS:
    for shape, (width, height) in SHAPES.items():
        if what in TOO_SMALL and min(width, height) < 16:
            SHAPE_CASES.append(Case(f"{what}: {shape}", make(width=width, height=height), "failed", TOO_SMALL[what],
                                    workflow))
        else:
            SHAPE_CASES.append(Case(f"{what}: {shape}", make(width=width, height=height), "handled", (shows,),
                                    workflow))


@pytest.mark.parametrize("case", SHAPE_CASES, ids=[c.name for c in SHAPE_CASES])
def test_extreme_shapes(server, uploaded, matrix, case):
    run_case(server, uploaded, matrix, case)


def test_dtypes_and_shapes_server_goes_on(server, uploaded):
    check_server_goes_on(server, uploaded)


# --------------------------------------------------------------------------------------------------
# kind 5: a model that returns NaN / inf inside Auto-Tune: stop at once when what every later candidate shares is
# broken; skip a candidate of its own. DiT passes are counted by the test model's call log.

def tune(server, uploaded, log: Path, rounds: int = 1, **flux) -> tuple[str, str, int]:
    """vmdiff_full on a TinyFlux logging its calls (and returning NaN / inf as ``flux`` says), the score threshold
    out of reach (every round runs its α and β stages): (outcome, message, DiT calls)."""
    api = tiny_workflow("vmdiff_full", uploaded, seed=4242)
    api[nid(api, "VMDiffTestTinyFlux")]["inputs"].update(call_log=str(log), **flux)
    api[nid(api, "VMDiffAutoTune")]["inputs"].update(threshold=10.0, rounds=rounds)
    got, message = outcome(server, api)
    calls = len(log.read_text().splitlines()) if log.exists() else 0
    print(f"Auto-Tune, rounds {rounds}, {flux or 'finite model'}: {got} after {calls} DiT passes: {message[:300]}")
    return got, message, calls


@pytest.fixture(scope="module")
def clean_calls(server, uploaded, tmp_path_factory):
    """DiT passes of the whole search (one round) on a finite model."""
    got, message, calls = tune(server, uploaded, tmp_path_factory.mktemp("clean") / "calls.log")
    assert got == "handled", message
    assert calls >= 2 + 3 * 2, calls  # ε_b (2 passes) and at least 3 α candidates (2 passes each)
    return calls


@pytest.mark.parametrize("flux, passes, says", [
    (dict(nan_from_call=1), 1, ("model pass 1 of 2 (denoise phase, σ = 1.0000)", "NaN or infinite")),
    (dict(nan_from_call=1, nan_value="inf"), 1, ("model pass 1 of 2 (denoise phase",)),
    (dict(nan_calls="2"), 2, ("model pass 2 of 2 (invert phase",)),
], ids=["NaN from the first pass", "inf from the first pass", "NaN only in Blending Noise's inversion"])
def test_a_broken_shared_eps_b_stops_the_search_at_once(server, uploaded, tmp_path, clean_calls, flux, passes, says):
    got, message, calls = tune(server, uploaded, tmp_path / "calls.log", **flux)
    assert got == "failed", message
    for part in ("VMDiff Auto-Tune: the search stops, as the ε_b every α candidate shares (Blending Noise of seed "
                 "4242, β = (1, 1)) is non-finite: the model's prediction at",
                 "weight_dtype", *says):
        assert part in message, message
    assert calls == passes < clean_calls, (calls, clean_calls)


def test_a_first_candidate_broken_at_every_pass_stops_the_search(server, uploaded, tmp_path, clean_calls):
    got, message, calls = tune(server, uploaded, tmp_path / "calls.log", nan_from_call=3)  # ε_b is finite
    assert got == "failed", message
    for part in ("VMDiff Auto-Tune: every model pass of the first candidate", "seed 4242",
                 "from model pass 1 of 2 (mix phase", "although its ε_b is finite", "weight_dtype"):
        assert part in message, message
    assert calls == 4 < clean_calls, (calls, clean_calls)  # ε_b (2) + the first candidate (2), nothing after


@pytest.mark.parametrize("nan_calls", ["5-6", "4"], ids=["every pass of the 2nd α candidate",
                                                          "the last pass of the 1st α candidate"])
def test_a_candidate_of_its_own_is_skipped_and_the_search_goes_on(server, uploaded, tmp_path, clean_calls,
                                                                   nan_calls):
    got, message, calls = tune(server, uploaded, tmp_path / "calls.log", nan_calls=nan_calls)
    assert got == "handled", message
    assert "best S = " in message and "best S = nan" not in message, message
    assert calls == clean_calls  # every candidate of the finite run was rendered


def test_nan_in_round_2_stops_at_its_first_pass(server, uploaded, tmp_path, clean_calls):
    got, message, calls = tune(server, uploaded, tmp_path / "calls.log", rounds=2, nan_from_call=clean_calls + 1)
    assert got == "failed", message
    assert "VMDiff Auto-Tune: the search stops, as the ε_b every α candidate shares (Blending Noise of seed" in \
        message and "seed 4242," not in message, message
    assert "model pass 1 of 2 (denoise phase" in message, message
    assert calls == clean_calls + 1, (calls, clean_calls)


def test_nan_server_goes_on(server, uploaded):
    check_server_goes_on(server, uploaded)
