"""Tiny random-weight stand-ins for the Similarity Score's models, written as FILES in the layouts users have, so
the tests load them through the same loader code (nodes/score_models.py) as real weights:

==================  ==========================================================  ==================================
folder              files                                                       model
==================  ==========================================================  ==================================
dinov2/             vmdiff-tiny-dinov2/{config.json, model.safetensors}         transformers Dinov2Model, hidden 32,
                                                                                1 layer (dinov2-base is 768 × 12)
open_clip/          vmdiff-tiny-clip.json (model config) + .safetensors         OpenCLIP ViT: width 32, 1 layer,
                                                                                embed 16 (ViT-bigG-14 is 1664 × 48)
bert-base-uncased/  vmdiff-tiny-bert/{config.json, model.safetensors,           BertModel hidden 32, 1 layer, a
                    vocab.txt, tokenizer_config.json}                           60-word vocab.txt
grounding-dino/     vmdiff-tiny-groundingdino.cfg.py + .pth ({"model": sd},     groundingdino-py, FULL Swin-T
                    the original release format)                                backbone (groundingdino-py only
                                                                                builds named Swin sizes) and
                                                                                d_model 256 (text position
                                                                                features are hard-coded to 256);
                                                                                1 encoder / 2 decoder layers, 16
                                                                                queries: 33 M parameters
sams/               vmdiff-tiny-sam.pth (a plain state dict, as released)       segment-anything Sam, ViT width 32,
                                                                                depth 2, 64 px input
==================  ==========================================================  ==================================

Generated once per recipe (hash of this file and the library versions) into ``<repo>/.cache/tiny_models`` (or a
given folder), beside tools/tiny_models.py's files, never committed.

CLI: ``python -m tools.tiny_scorers [--out DIR]``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import torch

from tools.tiny_models import REPO_ROOT, _generator, ensure_comfy
from tools.tiny_models import default_tiny_models_dir as default_models_dir

#: what the loader nodes are given for the tiny files (widget name -> value)
TINY_SCORER_NAMES = {
    "dinov2": "vmdiff-tiny-dinov2",
    "open_clip_model": "vmdiff-tiny-clip",
    "open_clip": "vmdiff-tiny-clip.safetensors",
    "grounding_dino_config": "vmdiff-tiny-groundingdino.cfg.py",
    "grounding_dino": "vmdiff-tiny-groundingdino.pth",
    "bert": "vmdiff-tiny-bert",
    "sam": "vmdiff-tiny-sam.pth",
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
TINY_BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ",", "'", "[", "]", "a", "photo", "of",
                   "most", "prominent", "object", "owl", "jar", "cat", "dog", "red", "blue", "green", "square",
                   "circle", "astronaut", "figurine", "creatively", "fused", "with", "the", "and"] + \
                  [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
# GroundingDINO SwinT-OGC with a small transformer (everything not listed is the release config's value)
TINY_GDINO_OVERRIDES = dict(enc_layers=1, dec_layers=2, dim_feedforward=256, num_queries=16)
TINY_SAM_CONFIG = dict(embed_dim=32, depth=2, patch_size=16, img_size=64, num_heads=2, mlp_ratio=4.0,
                       global_attn_indexes=[1], window_size=2, prompt_embed_dim=32, mask_in_chans=16,
                       decoder_depth=2, decoder_mlp_dim=64, num_multimask_outputs=3, iou_head_depth=3,
                       iou_head_hidden_dim=32)


def score_models_module():
    """nodes/score_models.py of the pack (imports ComfyUI, booted on the CPU if this process has not)."""
    ensure_comfy()
    from tools.comfy_env import load_pack

    load_pack()
    from vmdiff_pack.nodes import score_models

    return score_models


def recipe_hash(seed: int) -> str:
    versions = [importlib.metadata.version(p) for p in
                ("torch", "transformers", "open_clip_torch", "groundingdino-py", "segment-anything", "safetensors")]
    text = Path(__file__).read_bytes() + f"|{versions}|seed {seed}".encode()
    return hashlib.sha256(text).hexdigest()[:16]


def _seeded(seed: int, name: str):
    """Seed torch's global RNG from (seed, name), as tools.tiny_models seeds its generators."""
    torch.manual_seed(_generator(seed, name).initial_seed())


def write_bert(folder: Path) -> None:
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(TINY_BERT_WORDS) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512,
                                                              "tokenizer_class": "BertTokenizer"}))
    BertModel(BertConfig(vocab_size=len(TINY_BERT_WORDS), **TINY_BERT_CONFIG)).save_pretrained(folder)


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


def write_grounding_dino(folder: Path, bert_folder: Path, score_models) -> None:
    base = score_models.parse_literal_config(score_models.grounding_dino_config_path(score_models.BUILTIN_GDINO_CONFIG))
    config = dict(base, **TINY_GDINO_OVERRIDES)
    lines = ["# VMDiff tiny GroundingDINO: SwinT-OGC with a 1-encoder / 2-decoder transformer (random weights)"]
    lines += [f"{k} = {v!r}" for k, v in config.items()]
    (folder / TINY_SCORER_NAMES["grounding_dino_config"]).write_text("\n".join(lines) + "\n")
    model = score_models.build_grounding_dino(config, bert_folder)
    with torch.no_grad():  # small query features: unsaturated, distinct box confidences (no ties at 1.0)
        model.transformer.decoder.norm.weight.fill_(0.02)
    torch.save({"model": model.state_dict()}, folder / TINY_SCORER_NAMES["grounding_dino"])


def write_sam(folder: Path, score_models) -> None:
    torch.save(score_models.build_sam(TINY_SAM_CONFIG).state_dict(), folder / TINY_SCORER_NAMES["sam"])


def write_tiny_scorers(models_dir: Path | None = None, seed: int = 0, verbose: bool = False) -> dict[str, str]:
    """Write (or reuse) the tiny scorer files under ``models_dir/<folder>/``; returns TINY_SCORER_NAMES."""
    models_dir = Path(models_dir or default_models_dir())
    marker = models_dir / f".scorers-recipe-{recipe_hash(seed)}"
    if marker.is_file():
        return dict(TINY_SCORER_NAMES)
    score_models = score_models_module()
    folders = {name: models_dir / name
               for name in ("dinov2", "open_clip", "bert-base-uncased", "grounding-dino", "sams")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    bert_folder = folders["bert-base-uncased"] / TINY_SCORER_NAMES["bert"]
    steps = [
        ("bert", lambda: write_bert(bert_folder)),
        ("dinov2", lambda: write_dinov2(folders["dinov2"] / TINY_SCORER_NAMES["dinov2"])),
        ("open_clip", lambda: write_open_clip(folders["open_clip"])),
        ("grounding_dino", lambda: write_grounding_dino(folders["grounding-dino"], bert_folder, score_models)),
        ("sam", lambda: write_sam(folders["sams"], score_models)),
    ]
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
    if not (models_dir / f".scorers-recipe-{recipe_hash(seed)}").is_file():
        done = subprocess.run([sys.executable, "-m", "tools.tiny_scorers", "--out", str(models_dir), "--seed",
                               str(seed)], cwd=REPO_ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"tools.tiny_scorers failed ({done.returncode}):\n{done.stderr[-3000:]}")
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
