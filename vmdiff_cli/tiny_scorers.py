"""Tiny random-weight stand-ins for the Similarity Score's models, written as FILES in the layouts users have, so
the tests load them through the same loader code (vmdiff_comfy/scoring/) as real weights:

==================  ==========================================================  ==================================
folder              files                                                       model
==================  ==========================================================  ==================================
dinov2/             vmdiff-tiny-dinov2/{config.json, model.safetensors}         transformers Dinov2Model, hidden 32,
                                                                                1 layer (dinov2-base is 768 × 12)
open_clip/          vmdiff-tiny-clip.json (model config) + .safetensors         OpenCLIP ViT: width 32, 1 layer,
                                                                                embed 16 (ViT-bigG-14 is 1664 × 48)
bert-base-uncased/  vmdiff-tiny-bert/{config.json, model.safetensors,           BertModel hidden 32, 1 layer, a
                    vocab.txt, tokenizer_config.json}                           1034-entry vocab.txt (special
                                                                                tokens at bert-base's ids)
grounding-dino/     vmdiff-tiny-grounding-dino/{config.json, model.safetensors,  transformers GroundingDino: Swin
                    vocab.txt, tokenizer + preprocessor configs} (the Hugging   width 16, d_model 32, 1 encoder /
                    Face format: what the workflows use)                        2 decoder layers, 16 queries
grounding-dino/     vmdiff-tiny-groundingdino.cfg.py + .pth ({"model": sd},     groundingdino-py (the ORIGINAL
                    the original release format)                                implementation), FULL Swin-T
                                                                                backbone (it only builds named
                                                                                Swin sizes), d_model 256, 1
                                                                                encoder / 2 decoder layers, 16
                                                                                queries: 33 M parameters
sams/               vmdiff-tiny-sam/{config.json, model.safetensors,            transformers SamModel, ViT width
                    preprocessor_config.json} (Hugging Face format)             32, depth 2, 64 px input
sams/               vmdiff-tiny-sam.pth (a plain state dict, as released)       segment-anything Sam (ORIGINAL),
                                                                                same sizes
==================  ==========================================================  ==================================

The original-format files are written with groundingdino-py and segment-anything, TEST-ONLY dependencies (never in
requirements.txt): the pack maps them onto transformers, and tests/nodes/test_score_equivalence.py compares the two.

Generated once per recipe (hash of this file and the library versions) into ``<repo>/.cache/tiny_models`` (or a
given folder), beside vmdiff_cli/tiny_models.py's files, never committed.

CLI: ``python -m vmdiff_cli.tiny_scorers [--out DIR]``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

from vmdiff_cli.tiny_models import REPO_ROOT, _generator, ensure_comfy, source_digest
from vmdiff_cli.tiny_models import default_tiny_models_dir as default_models_dir

#: what the loader nodes are given for the tiny files (widget name -> value)
TINY_SCORER_NAMES = {
    "dinov2": "vmdiff-tiny-dinov2",
    "open_clip_model": "vmdiff-tiny-clip",
    "open_clip": "vmdiff-tiny-clip.safetensors",
    "grounding_dino_config": "vmdiff-tiny-groundingdino.cfg.py",
    "grounding_dino": "vmdiff-tiny-groundingdino.pth",
    "bert": "vmdiff-tiny-bert",
    "sam": "vmdiff-tiny-sam.pth",
    "grounding_dino_hf": "vmdiff-tiny-grounding-dino",
    "sam_hf": "vmdiff-tiny-sam",
}

TINY_DINOV2_CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=4, patch_size=14,
                          image_size=518, layerscale_value=1.0)
TINY_OPEN_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_BERT_CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=512)
#: bert-base-uncased's ids of the tokens GroundingDINO treats as special (transformers hard-codes these ids)
BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, "'": 1005, ",": 1010,
                    ".": 1012, "?": 1029, "[": 1031, "]": 1033}
TINY_BERT_TEXT = ["a", "photo", "of", "most", "prominent", "object", "owl", "jar", "cat", "dog", "red", "blue", "green",
                  "square", "circle", "astronaut", "figurine", "creatively", "fused", "with", "the", "and"] + \
                 [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]


def tiny_bert_vocab() -> list[str]:
    """A 1034-entry vocab.txt with the special tokens at bert-base-uncased's ids, the words after them."""
    words = [f"[unused{i}]" for i in range(1034)]
    for token, i in BERT_SPECIAL_IDS.items():
        words[i] = token
    free = [i for i in range(1, 1034) if words[i].startswith("[unused") and i not in range(100, 104)]
    for i, word in zip(free[-len(TINY_BERT_TEXT):], TINY_BERT_TEXT):
        words[i] = word
    return words
# GroundingDINO SwinT-OGC with a small transformer (everything not listed is the release config's value)
TINY_GDINO_OVERRIDES = dict(enc_layers=1, dec_layers=2, dim_feedforward=256, num_queries=16)
TINY_SAM_CONFIG = dict(embed_dim=32, depth=2, patch_size=16, img_size=64, num_heads=2, mlp_dim=128,
                       global_attn_indexes=[1], window_size=2, prompt_embed_dim=32, mask_in_chans=16,
                       decoder_depth=2, decoder_mlp_dim=64, num_multimask_outputs=3, iou_head_depth=3,
                       iou_head_hidden_dim=32)
# transformers GroundingDino, small everywhere (the original implementation cannot be made this small)
TINY_HF_GDINO = dict(backbone_config=dict(model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                          window_size=7, image_size=224, out_indices=[2, 3, 4]),
                     d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                     encoder_attention_heads=2, decoder_attention_heads=2, num_queries=16)


def scoring_modules():
    """The pack's vmdiff_comfy.scoring detection and segmentation modules (imports ComfyUI, booted on the CPU if this
    process has not)."""
    ensure_comfy()
    from vmdiff_cli.comfy_env import load_pack

    load_pack()
    from vmdiff_pack.vmdiff_comfy.scoring import detection, segmentation

    return detection, segmentation


# --------------------------------------------------------------------------------------------------
# the ORIGINAL implementations (test-only dependencies), to write release-format files and compare against

class GroundingBertCompat(torch.nn.Module):
    """groundingdino-py's BERT wrapper for transformers 5 (its BertModelWarper calls ``get_extended_attention_mask``
    / ``get_head_mask``, which transformers 5 removed). Same sub-modules, hence the same ``bert.*`` checkpoint keys;
    the (B, N, N) sub-sentence mask becomes an additive attention mask, as BertModelWarper makes it."""

    def __init__(self, bert_model):
        super().__init__()
        self.config = bert_model.config
        self.embeddings = bert_model.embeddings
        self.encoder = bert_model.encoder
        self.pooler = bert_model.pooler

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, **_):
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask[:, None] if attention_mask.ndim == 3 else attention_mask[:, None, None]
        additive = (1.0 - mask.to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        hidden = self.encoder(hidden, attention_mask=additive)[0]
        return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=hidden, pooler_output=self.pooler(hidden))


def build_original_grounding_dino(config: dict, bert_folder: Path) -> torch.nn.Module:
    """groundingdino-py's model for a config dict (e.g. the release's GroundingDINO_SwinT_OGC.py read as literals),
    its text encoder built from a local BERT folder, for inference. Random weights except BERT's."""
    from types import SimpleNamespace

    import groundingdino.models.GroundingDINO.groundingdino as gd_module
    from groundingdino.models import build_model

    config = dict(config, text_encoder_type=str(bert_folder), use_checkpoint=False, use_transformer_ckpt=False,
                  device="cpu")
    original, gd_module.BertModelWarper = gd_module.BertModelWarper, GroundingBertCompat
    try:
        return build_model(SimpleNamespace(**config)).eval()
    finally:
        gd_module.BertModelWarper = original


def original_grounding_dino_config() -> dict:
    """The release's GroundingDINO_SwinT_OGC.py, as shipped in groundingdino-py, read as literals."""
    import groundingdino

    detection, _ = scoring_modules()
    return detection.parse_literal_config(Path(groundingdino.__file__).parent / "config" / "GroundingDINO_SwinT_OGC.py")


def build_original_sam(config: dict):
    """A segment_anything ``Sam`` of the given architecture (the library's builders hard-code vit_h/l/b)."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    c = config
    grid = c["img_size"] // c["patch_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=c["depth"], embed_dim=c["embed_dim"], img_size=c["img_size"], mlp_ratio=c["mlp_dim"] / c["embed_dim"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=c["num_heads"], patch_size=c["patch_size"],
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=c["global_attn_indexes"],
            window_size=c["window_size"], out_chans=c["prompt_embed_dim"]),
        prompt_encoder=PromptEncoder(
            embed_dim=c["prompt_embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=c["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=c["num_multimask_outputs"],
            transformer=TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=c["prompt_embed_dim"],
                                          mlp_dim=c["decoder_mlp_dim"], num_heads=8),
            transformer_dim=c["prompt_embed_dim"], iou_head_depth=c["iou_head_depth"],
            iou_head_hidden_dim=c["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def originals_available() -> bool:
    """Whether the test-only ORIGINAL implementations (groundingdino-py, segment-anything) are installed: without them
    (the main job's environment) only the Hugging Face formats are written, which is what the workflows use."""
    return all(importlib.util.find_spec(m) is not None for m in ("groundingdino", "segment_anything"))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def scorers_recipe_hash(seed: int) -> str:
    versions = [_version(p) for p in
                ("torch", "transformers", "open_clip_torch", "groundingdino-py", "segment-anything", "safetensors")]
    return source_digest(Path(__file__).read_bytes(), f"|{versions}|seed {seed}")


def _seeded(seed: int, name: str):
    """Seed torch's global RNG from (seed, name), as vmdiff_cli.tiny_models seeds its generators."""
    torch.manual_seed(_generator(seed, name).initial_seed())


def write_bert(folder: Path) -> None:
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = tiny_bert_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512,
                                                              "tokenizer_class": "BertTokenizer"}))
    BertModel(BertConfig(vocab_size=len(vocab), **TINY_BERT_CONFIG)).save_pretrained(folder)


def write_dinov2(folder: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(**TINY_DINOV2_CONFIG)).save_pretrained(folder)


def write_open_clip(folder: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    config_path = folder / f"{TINY_SCORER_NAMES['open_clip_model']}.json"
    config_path.write_text(json.dumps(TINY_OPEN_CLIP_CONFIG, indent=1))
    open_clip.add_model_config(config_path)
    model = open_clip.create_model(TINY_SCORER_NAMES["open_clip_model"], pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / TINY_SCORER_NAMES["open_clip"]))


def write_grounding_dino(folder: Path, bert_folder: Path) -> None:
    """The original release format, written by groundingdino-py: a *.cfg.py and a {"model": state_dict} .pth."""
    config = dict(original_grounding_dino_config(), **TINY_GDINO_OVERRIDES)
    lines = ["# VMDiff tiny GroundingDINO: SwinT-OGC with a 1-encoder / 2-decoder transformer (random weights)"]
    lines += [f"{k} = {v!r}" for k, v in config.items()]
    (folder / TINY_SCORER_NAMES["grounding_dino_config"]).write_text("\n".join(lines) + "\n")
    model = build_original_grounding_dino(config, bert_folder)
    with torch.no_grad():  # small query features: unsaturated, distinct box confidences (no ties at 1.0)
        model.transformer.decoder.norm.weight.fill_(0.02)
    torch.save({"model": model.state_dict()}, folder / TINY_SCORER_NAMES["grounding_dino"])


def write_grounding_dino_hf(folder: Path, bert_folder: Path) -> None:
    """The Hugging Face format (as IDEA-Research/grounding-dino-tiny): config, safetensors weights, the BERT
    tokenizer files and the processor config, written by transformers."""
    from transformers import (AutoTokenizer, BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor)

    text_config = BertConfig.from_pretrained(str(bert_folder))
    model = GroundingDinoForObjectDetection(GroundingDinoConfig(text_config=text_config, **TINY_HF_GDINO))
    with torch.no_grad():  # as write_grounding_dino: distinct, unsaturated box confidences
        model.model.decoder.layer_norm.weight.fill_(0.02)
    model.save_pretrained(folder)
    GroundingDinoProcessor(GroundingDinoImageProcessor(), AutoTokenizer.from_pretrained(str(bert_folder))) \
        .save_pretrained(folder)


def write_sam(folder: Path) -> None:
    """The original release format, written by segment-anything: a plain state dict .pth."""
    torch.save(build_original_sam(TINY_SAM_CONFIG).state_dict(), folder / TINY_SCORER_NAMES["sam"])


def write_sam_hf(folder: Path) -> None:
    """The Hugging Face format (as facebook/sam-vit-base), written by transformers."""
    from transformers import SamImageProcessor, SamModel, SamProcessor

    _, segmentation = scoring_modules()
    SamModel(segmentation.hf_sam_config(TINY_SAM_CONFIG)).save_pretrained(folder)
    size = TINY_SAM_CONFIG["img_size"]
    SamProcessor(SamImageProcessor(size={"longest_edge": size}, pad_size={"height": size, "width": size})) \
        .save_pretrained(folder)


def scorers_marker(models_dir: Path, seed: int = 0) -> Path:
    """The file that says this recipe's scorer files are in ``models_dir`` (``-hf``: the Hugging Face formats only)."""
    return models_dir / f".scorers-recipe-{scorers_recipe_hash(seed)}{'' if originals_available() else '-hf'}"


def write_tiny_scorers(models_dir: Path | None = None, seed: int = 0, verbose: bool = False) -> dict[str, str]:
    """Write (or reuse) the tiny scorer files under ``models_dir/<folder>/``; returns TINY_SCORER_NAMES."""
    models_dir = Path(models_dir or default_models_dir())
    marker = scorers_marker(models_dir, seed)
    if marker.is_file():
        return dict(TINY_SCORER_NAMES)
    folders = {name: models_dir / name
               for name in ("dinov2", "open_clip", "bert-base-uncased", "grounding-dino", "sams")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    bert_folder = folders["bert-base-uncased"] / TINY_SCORER_NAMES["bert"]
    steps = [
        ("bert", lambda: write_bert(bert_folder)),
        ("dinov2", lambda: write_dinov2(folders["dinov2"] / TINY_SCORER_NAMES["dinov2"])),
        ("open_clip", lambda: write_open_clip(folders["open_clip"])),
        ("grounding_dino", lambda: write_grounding_dino(folders["grounding-dino"], bert_folder)),
        ("grounding_dino_hf", lambda: write_grounding_dino_hf(folders["grounding-dino"] / TINY_SCORER_NAMES[
            "grounding_dino_hf"], bert_folder)),
        ("sam", lambda: write_sam(folders["sams"])),
        ("sam_hf", lambda: write_sam_hf(folders["sams"] / TINY_SCORER_NAMES["sam_hf"])),
    ]
    if not originals_available():  # the original-format files need the test-only packages
        steps = [(name, step) for name, step in steps if name not in ("grounding_dino", "sam")]
    with torch.random.fork_rng():
        for name, step in steps:
            start = time.perf_counter()
            _seeded(seed, name)
            step()
            if verbose:
                print(f"wrote tiny {name} in {time.perf_counter() - start:.1f} s")
    for old in models_dir.glob(".scorers-recipe-*"):
        old.unlink()
    marker.write_text(json.dumps(TINY_SCORER_NAMES, indent=1))
    return dict(TINY_SCORER_NAMES)


def ensure_tiny_scorers(models_dir: Path | None = None, seed: int = 0) -> dict[str, str]:
    """write_tiny_scorers in a child process (keeps the generator's memory and RNG use out of the caller) unless the
    files of this recipe are already there."""
    import subprocess

    models_dir = Path(models_dir or default_models_dir())
    if not scorers_marker(models_dir, seed).is_file():
        done = subprocess.run([sys.executable, "-m", "vmdiff_cli.tiny_scorers", "--out", str(models_dir), "--seed",
                               str(seed)], cwd=REPO_ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"vmdiff_cli.tiny_scorers failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(TINY_SCORER_NAMES)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write tiny random-weight scorer model files (DINOv2, OpenCLIP, "
                                                 "GroundingDINO + BERT, SAM).")
    parser.add_argument("--out", type=Path, default=None, help=f"models dir (default {default_models_dir()})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    names = write_tiny_scorers(args.out, args.seed, verbose=True)
    print(json.dumps(names, indent=1))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
