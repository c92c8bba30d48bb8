"""One random-weight OpenCLIP model written in BOTH layouts a user may have, for the CLIP-from-ComfyUI tests:

* ``open_clip/<name>.safetensors`` (+ ``<name>.json`` for a custom config): the OpenCLIP checkpoint, as
  VMDiff Load OpenCLIP reads it;
* ``clip_vision/<name>_vision.safetensors``: the vision tower in the ``vision_model.*`` + ``visual_projection``
  layout of ``clip_vision_g.safetensors`` (core Load CLIP Vision), plus ``<name>_vision.comfy.json``, ComfyUI's
  CLIP-vision config for it (for ``comfy.clip_vision.ClipVisionModel`` when the shape is not one ComfyUI knows);
* ``text_encoders/<name>_text.safetensors``: the text tower in the ``text_model.*`` + ``text_projection`` layout of
  ``clip_g.safetensors`` / ``clip_l.safetensors`` (core Load CLIP).

The key conversion is ComfyUI's own (``comfy.clip_vision.convert_to_transformers``,
``comfy.utils.clip_text_transformers_convert``, what its loaders apply to OpenCLIP files). Every weight is rounded
to fp16 and all three files hold the same fp16 values: ComfyUI keeps text encoders and CLIP vision in fp16 on the
CPU, so both paths compute with identical numbers.

Two recipes:

=================  ============================================  ======================================================
``TINY_CLIP_G``    vision 32 wide × 2 layers, text 48 wide × 32  ViT-bigG-14's kind (GELU, pad token 0): Load CLIP's
                   layers (``layers.30`` present: detected as   detection picks CLIP-G, so ``comfy.sd.load_clip`` builds
                   CLIP-G), 48-d embedding; 2.6 M parameters     SDXL's clip_g tower and tokenizer (its ``model_config``
                                                                 option gives the width)
``VIT_L``          OpenAI CLIP ViT-L-14 (``ViT-L-14-quickgelu``)  full size, 428 M parameters (0.86 GB per layout): the
                   random weights                                smallest two-tower CLIP the core loaders accept
                                                                 unmodified (their configs are fixed per family), for
                                                                 the real-server test
=================  ============================================  ======================================================

CLI: ``python -m tests.support.clip_towers [--out DIR] [--recipe tiny_clip_g|vit_l]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vmdiff_cli.tiny_models import REPO_ROOT, _generator, default_tiny_models_dir, ensure_comfy, source_digest  # noqa: F401

TINY_CLIP_G = {
    "name": "vmdiff-tiny-clip-g",
    "config": {"embed_dim": 48,  # = text width: ComfyUI's text_projection is square (as in every released CLIP)
               "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 16, "patch_size": 32},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 32}},
}
VIT_L = {"name": "vmdiff-vit-l-14", "model": "ViT-L-14-quickgelu"}
RECIPES = {"tiny_clip_g": TINY_CLIP_G, "vit_l": VIT_L}


def tower_files(recipe: dict) -> dict[str, str]:
    """{folder: file name} of a recipe (the OpenCLIP model name is ``recipe_model_name``)."""
    name = recipe["name"]
    return {"open_clip": f"{name}.safetensors", "clip_vision": f"{name}_vision.safetensors",
            "text_encoders": f"{name}_text.safetensors"}


def recipe_model_name(recipe: dict) -> str:
    return recipe.get("model", recipe["name"])


def open_clip_config(recipe: dict) -> dict:
    if "config" in recipe:
        return recipe["config"]
    import open_clip

    return open_clip.get_model_config(recipe["model"])


def comfy_vision_config(config: dict) -> dict:
    """ComfyUI's CLIP-vision JSON (as comfy/clip_vision_config_g.json) for an OpenCLIP model config."""
    v = config["vision_cfg"]
    width = v["width"]
    return {"hidden_act": "quick_gelu" if config.get("quick_gelu") else "gelu", "hidden_size": width,
            "image_size": v["image_size"], "intermediate_size": int(width * v.get("mlp_ratio", 4.0)),
            "layer_norm_eps": 1e-5, "model_type": "clip_vision_model",
            "num_attention_heads": width // v.get("head_width", 64), "num_channels": 3,
            "num_hidden_layers": v["layers"], "patch_size": v["patch_size"], "projection_dim": config["embed_dim"]}


def comfy_text_config(config: dict) -> dict:
    """ComfyUI's CLIP text config (as comfy/clip_config_bigg.json) for an OpenCLIP model config."""
    t = config["text_cfg"]
    return {"hidden_act": "quick_gelu" if config.get("quick_gelu") else "gelu", "hidden_size": t["width"],
            "intermediate_size": int(t["width"] * t.get("mlp_ratio", 4.0)), "layer_norm_eps": 1e-5,
            "max_position_embeddings": t.get("context_length", 77), "num_attention_heads": t["heads"],
            "num_hidden_layers": t["layers"], "projection_dim": config["embed_dim"], "eos_token_id": 49407,
            "vocab_size": t.get("vocab_size", 49408), "model_type": "clip_text_model"}


def open_clip_to_comfy(sd: dict) -> tuple[dict, dict]:
    """An OpenCLIP state dict → (vision tower, text tower) in the layouts of clip_vision_g / clip_g, by ComfyUI's
    converters. Tensors are cloned (safetensors refuses the q/k/v views of one in_proj tensor)."""
    ensure_comfy()
    import comfy.clip_vision
    import comfy.utils

    vision = comfy.clip_vision.convert_to_transformers({k: v for k, v in sd.items() if k.startswith("visual.")},
                                                       "visual.")
    text = {k: v for k, v in sd.items() if not k.startswith("visual.") and not k.startswith("logit_")}
    text = comfy.utils.clip_text_transformers_convert(text, "", "")
    clone = lambda d: {k: v.contiguous().clone() for k, v in d.items()}  # noqa: E731
    return clone(vision), clone(text)


def towers_recipe_hash(recipe: dict, seed: int) -> str:
    import importlib.metadata

    versions = [importlib.metadata.version("open_clip_torch"), importlib.metadata.version("torch")]
    return source_digest(Path(__file__).read_bytes(), json.dumps([recipe, seed, *versions]))


def write_clip_towers(models_dir: Path | None = None, recipe: dict = TINY_CLIP_G, seed: int = 0,
                      verbose: bool = False) -> dict[str, Path]:
    """Write (or reuse) the recipe's files under ``models_dir/<folder>/``; returns {folder: path}."""
    import open_clip
    from safetensors.torch import save_file

    models_dir = Path(models_dir or default_tiny_models_dir())
    paths = {folder: models_dir / folder / name for folder, name in tower_files(recipe).items()}
    marker = models_dir / f".clip-towers-{recipe['name']}-{towers_recipe_hash(recipe, seed)}"
    if marker.is_file() and all(p.is_file() for p in paths.values()):
        return paths
    start = time.perf_counter()
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    config = open_clip_config(recipe)
    if "config" in recipe:
        config_path = paths["open_clip"].with_suffix(".json")
        config_path.write_text(json.dumps(config, indent=1))
        open_clip.add_model_config(config_path)
    with torch.random.fork_rng():
        torch.manual_seed(_generator(seed, recipe["name"]).initial_seed())
        model = open_clip.create_model(recipe_model_name(recipe), pretrained=None)
    sd = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
    del model
    vision, text = open_clip_to_comfy(dict(sd))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(paths["open_clip"]))
    save_file(vision, str(paths["clip_vision"]))
    save_file(text, str(paths["text_encoders"]))
    paths["clip_vision"].with_suffix(".comfy.json").write_text(json.dumps(comfy_vision_config(config), indent=1))
    for old in models_dir.glob(f".clip-towers-{recipe['name']}-*"):
        old.unlink()
    marker.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    if verbose:
        params = sum(v.numel() for v in sd.values())
        print(f"wrote {recipe['name']}: {params / 1e6:.1f} M params in {time.perf_counter() - start:.1f} s")
    return paths


def ensure_clip_towers(models_dir: Path | None = None, recipe_name: str = "tiny_clip_g", seed: int = 0) -> dict:
    """write_clip_towers in a child process (its memory is returned before a server starts); {folder: path}."""
    import subprocess

    models_dir = Path(models_dir or default_tiny_models_dir())
    subprocess.run([sys.executable, "-m", "tests.support.clip_towers", "--out", str(models_dir),
                    "--recipe", recipe_name,
                    "--seed", str(seed)], cwd=REPO_ROOT, check=True, capture_output=True)
    return {folder: models_dir / folder / name for folder, name in tower_files(RECIPES[recipe_name]).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write one random OpenCLIP model as an OpenCLIP checkpoint and as "
                                                 "ComfyUI CLIP-vision + CLIP text files.")
    parser.add_argument("--out", type=Path, default=None, help=f"models dir (default {default_tiny_models_dir()})")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="tiny_clip_g")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for folder, path in write_clip_towers(args.out, RECIPES[args.recipe], args.seed, verbose=True).items():
        print(f"{folder:14s} {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
