"""The Similarity Score's CLIP from ComfyUI's own files, in-process.

One random OpenCLIP stand-in (tests/support/clip_towers TINY_CLIP_G) is written as an OpenCLIP checkpoint and as
clip_vision_g- / clip_g-layout files. The OpenCLIP file goes through VMDiff Load OpenCLIP; the other two through
ComfyUI's own loading code (``comfy.sd.load_clip``, which detects CLIP-G and builds SDXL's clip_g tower and
tokenizer; ``comfy.clip_vision.ClipVisionModel``). Both must give the same T cosines, term by term."""
import pytest
import torch


import comfy.clip_vision
import comfy.sd
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.utils
import folder_paths
import open_clip

from tests.support import clip_towers
from vmdiff_cli.tiny_models import tiny_clip_l, tiny_clip_vision
from vmdiff_pack.nodes.clip_from_comfy import VMDiffClipFromComfy
from vmdiff_pack.nodes.score_loaders import VMDiffLoadOpenCLIP
from vmdiff_pack.nodes.similarity_score import VMDiffScorer
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.scoring.clip_comfy import (ComfyClipEncoder, Tower, literal_prompt,
                                                         pick_text_tower)
from vmdiff_pack.vmdiff_comfy.scoring.dino import DinoEncoder
from vmdiff_pack.vmdiff_comfy.scoring.similarity import RESIZE_MODES
from vmdiff_pack.vmdiff_ops import score as score_ops

RECIPE = clip_towers.TINY_CLIP_G
CONFIG = RECIPE["config"]
LABELS = ["owl", "jar", "teddy bear", "Owl's JAR!", "red-eyed tree frog", "café crème", "(owl:1.5)", "&amp; fish",
          "a\tcat\nsitting", "word " * 80]
TEXTS = [score_ops.label_text(label, mode) for label in LABELS for mode in score_ops.LABEL_TEXT_MODES]
TOL = 1e-5


def views(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=gen) for h, w in ((224, 224), (48, 64), (301, 97), (20, 20))]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    paths = clip_towers.write_clip_towers(tmp_path_factory.mktemp("clip_towers"), RECIPE)
    folder = str(paths["open_clip"].parent)
    folder_paths.add_model_folder_path("open_clip", folder)
    yield paths
    folder_paths.folder_names_and_paths["open_clip"][0].remove(folder)


@pytest.fixture(scope="module")
def reference(files):
    """VMDiff Load OpenCLIP on the OpenCLIP layout."""
    return VMDiffLoadOpenCLIP.execute(RECIPE["name"], files["open_clip"].name).result[0]


def load_clip_g(path, **model_options):
    """Core Load CLIP's code (comfy.sd.load_clip, type stable_diffusion): the file's 32 layers make it detect as
    CLIP-G; ComfyUI's ``model_config`` option (which it completes with the file's context length) gives the width."""
    return comfy.sd.load_clip([str(path)], model_options={"model_config": clip_towers.comfy_text_config(CONFIG),
                                                          **model_options})


def load_clip_vision(path):
    vision = comfy.clip_vision.ClipVisionModel(str(path.with_suffix(".comfy.json")))
    missing, unexpected = vision.load_sd(comfy.utils.load_torch_file(str(path), safe_load=True))
    assert not missing and not unexpected, (missing, unexpected)
    return vision


@pytest.fixture(scope="module")
def comfy_towers(files):
    return load_clip_vision(files["clip_vision"]), load_clip_g(files["text_encoders"])


@pytest.fixture(scope="module")
def comfy_clip(comfy_towers):
    """VMDiff CLIP from ComfyUI on the two towers."""
    return VMDiffClipFromComfy.execute(*comfy_towers).result[0]


def cosines(encoder, texts=TEXTS, resize="squash", seed=0):
    return torch.stack([score_ops.cosine_similarity(encoder.encode_images(views(seed), resize), t[None])
                        for t in encoder.encode_texts(texts)])


def test_the_files_are_in_the_release_layouts(files, comfy_towers):
    vision, clip = comfy_towers
    assert isinstance(clip.cond_stage_model, comfy.sdxl_clip.SDXLRefinerClipModel)  # detected as CLIP-G
    assert isinstance(clip.tokenizer, comfy.sdxl_clip.SDXLTokenizer)
    text_sd = comfy.utils.load_torch_file(str(files["text_encoders"]), safe_load=True)
    tower = clip.cond_stage_model.clip_g.transformer
    assert set(text_sd) == set(tower.state_dict()), set(text_sd) ^ set(tower.state_dict())
    assert set(comfy.utils.load_torch_file(str(files["clip_vision"]))) == set(vision.model.state_dict())
    assert sorted(k for k in text_sd if "layers" not in k) == [
        "text_model.embeddings.position_embedding.weight", "text_model.embeddings.token_embedding.weight",
        "text_model.final_layer_norm.bias", "text_model.final_layer_norm.weight", "text_projection.weight"]
    reference_sd = comfy.utils.load_torch_file(str(files["open_clip"]))
    assert torch.equal(text_sd["text_projection.weight"], reference_sd["text_projection"].T)
    assert torch.equal(tower.text_projection.weight.float(), reference_sd["text_projection"].T.float())


@pytest.mark.parametrize("resize", RESIZE_MODES)
def test_same_text_image_cosines_as_open_clip(reference, comfy_clip, resize):
    t_ref, t_comfy = cosines(reference, resize=resize), cosines(comfy_clip, resize=resize)
    diff = (t_ref - t_comfy).abs().max().item()
    print(f"\nT ({t_ref.shape[0]} texts × {t_ref.shape[1]} views, {resize}): max |ΔT| = {diff:.2e}, "
          f"T spread {t_ref.min():.3f} … {t_ref.max():.3f}")
    assert diff <= TOL
    assert t_ref.std() > 0.01  # the cosines differ between texts and views: a wrong tower would show


def test_the_scorer_gives_the_same_terms(reference, comfy_clip):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    dino = DinoEncoder(Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)), "tiny")
    gen = torch.Generator().manual_seed(3)
    sources = [torch.rand(1, 48, 64, 3, generator=gen), torch.rand(1, 56, 40, 3, generator=gen)]
    fused = torch.rand(3, 40, 40, 3, generator=gen)
    results = [VMDiffScorer.execute(dino, clip, *sources, "owl", "teddy bear", isolation="none").result[0]
               .score(fused) for clip in (reference, comfy_clip)]
    for ref, got in zip(*results):
        assert abs(ref["T1"] - got["T1"]) <= TOL and abs(ref["T2"] - got["T2"]) <= TOL, (ref, got)
        assert ref["D1"] == got["D1"] and abs(ref["score"] - got["score"]) <= 2 * TOL / 0.3


def test_comfy_tokenizers_give_open_clip_tokens():
    """SDXL's clip_g tokenizer (first 77-token chunk) = OpenCLIP's, padding included; SD1's clip_l tokenizer pads with
    end-of-text instead of 0, so its tokens agree up to the first end-of-text, where both towers pool."""
    reference = open_clip.get_tokenizer("ViT-bigG-14")(TEXTS)
    clip_g, clip_l = comfy.sdxl_clip.SDXLClipGTokenizer(), comfy.sd1_clip.SDTokenizer()
    for text, ref in zip(TEXTS, reference.tolist()):
        g = [t for t, _ in clip_g.tokenize_with_weights(literal_prompt(text))[0]]
        l_ = [t for t, _ in clip_l.tokenize_with_weights(literal_prompt(text))[0]]
        eot = ref.index(49407)
        assert g == ref, text
        assert l_[:eot + 1] == ref[:eot + 1] and l_.index(49407) == eot and set(l_[eot:]) == {49407}, text
    unescaped = [t for t, _ in clip_g.tokenize_with_weights("(owl:1.5) &amp;")[0]]
    assert unescaped != open_clip.get_tokenizer("ViT-bigG-14")(["(owl:1.5) &amp;"])[0].tolist()


def test_an_sdxl_clip_with_two_towers_uses_the_one_of_the_vision_tower(files, comfy_towers, reference):
    class Target:
        params = {}
        clip = comfy.sdxl_clip.SDXLClipModel
        tokenizer = comfy.sdxl_clip.SDXLTokenizer

    sdxl = comfy.sd.CLIP(Target(), model_options={
        "clip_g_model_config": clip_towers.comfy_text_config(CONFIG),
        "clip_l_model_config": dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=3,
                                    projection_dim=32)})
    sdxl.load_sd(comfy.utils.load_torch_file(str(files["text_encoders"])))  # SDXLClipModel routes it to clip_g
    encoder = ComfyClipEncoder(comfy_towers[0], sdxl)
    assert encoder.key == "g" and encoder.info["text"].startswith("clip_g (48 wide, 32 layers, 48-d")
    assert (cosines(encoder, TEXTS[:6]) - cosines(reference, TEXTS[:6])).abs().max() <= TOL


def test_mismatched_towers_are_refused_by_name(comfy_towers):
    vision, clip = comfy_towers
    with pytest.raises(VMDiffInputError,
                       match=r"clip_text: this CLIP holds clip_l \(32 wide.*32-d.*unlisted model \(clip_vision .*48-d"):
        VMDiffClipFromComfy.execute(vision, tiny_clip_l())  # another model's text tower, 32-d vs 48-d
    with pytest.raises(VMDiffInputError, match=r"clip_vision: .*no CLIP image projection.*clip_vision_g"):
        VMDiffClipFromComfy.execute(tiny_clip_vision(), clip)  # SigLIP: no projection, no text tower in ComfyUI
    with pytest.raises(VMDiffInputError, match=r"clip_text: expected a CLIP from Load CLIP, got ClipVisionModel"):
        VMDiffClipFromComfy.execute(vision, vision)


BIGG_V, BIGG_T = Tower("clip_vision", 1664, 48, 1280, 224), Tower("clip_g", 1280, 32, 1280)
L_V, L_T = Tower("clip_vision", 1024, 24, 768, 224), Tower("clip_l", 768, 12, 768)
H_V, H_T = Tower("clip_vision", 1280, 32, 1024, 224), Tower("clip_h", 1024, 24, 1024)


@pytest.mark.parametrize("vision, texts, chosen", [
    (BIGG_V, [L_T, BIGG_T], BIGG_T),       # SDXL checkpoint's CLIP with clip_vision_g → clip_g
    (L_V, [L_T, BIGG_T], L_T),             # … with clip_vision_l → clip_l
    (H_V, [H_T], H_T),
    (Tower("clip_vision", 32, 2, 24, 224), [Tower("clip_g", 32, 32, 24)], Tower("clip_g", 32, 32, 24)),  # unlisted
])
def test_towers_are_paired_by_family(vision, texts, chosen):
    assert pick_text_tower(vision, texts) == chosen


@pytest.mark.parametrize("vision, texts, message", [
    (BIGG_V, [L_T], r"holds clip_l .*OpenAI CLIP ViT-L-14's text tower; none is the text tower of the CLIP_VISION, "
                    r"OpenCLIP ViT-bigG-14 .*clip_vision_g.safetensors .* \+ clip_g.safetensors"),
    (H_V, [BIGG_T], r"ViT-H-14"),                                          # wrong family, other width
    (BIGG_V, [Tower("clip_g", 1280, 24, 1280)], r"ViT-bigG-14"),            # same width, other depth
    (Tower("clip_vision", 1024, 24, 768, 336), [L_T], r"ViT-L-14's text tower; .*unlisted model"),  # ViT-L/14-336
    (Tower("clip_vision", 32, 2, 24, 224), [Tower("clip_l", 32, 3, 32)], r"32-d.*24-d.*VMDiff Load OpenCLIP"),
    (Tower("clip_vision", 32, 2, 24, 224), [], r"holds no CLIP text tower"),  # e.g. a T5-only CLIP
    (Tower("clip_vision", 32, 2, 24, 224), [Tower("clip_g", 48, 3, 24), Tower("clip_l", 32, 3, 24)],
     r"several text towers .*clip_g .*; clip_l .*alone"),                   # two unlisted towers fit: ambiguous
])
def test_mismatched_pairs_are_refused_with_the_fix(vision, texts, message):
    with pytest.raises(VMDiffInputError, match=message):
        pick_text_tower(vision, texts)
