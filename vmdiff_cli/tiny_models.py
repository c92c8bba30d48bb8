"""Tiny random-weight stand-ins for the models VMDiff runs on, built from ComfyUI's own classes.

Real weights (FLUX.1-dev, SigLIP-so400m, Redux, the Flux VAE, CLIP-L) cannot be downloaded where the tests
run, so this module makes random-weight replacements that ComfyUI treats exactly like the real thing:

A. In-process stand-ins (milliseconds per call) for node tests: ``tiny_flux``, ``tiny_clip_vision``,
   ``tiny_style_model``, ``tiny_vae``, ``tiny_clip_l``, ``tiny_flux_conditioning``; an SD1.5-class UNet for MagicMix:
   ``tiny_sd15``, ``tiny_sd15_conditioning``. They return ComfyUI's real objects
   (ModelPatcher, ClipVisionModel, StyleModel, VAE, CONDITIONING), never mocks.
B. Real-loader files (``write_real_loader_models``): the smallest safetensors files that ComfyUI's own
   loader nodes (UNETLoader, CLIPVisionLoader, StyleModelLoader, VAELoader, CLIPLoader, CheckpointLoaderSimple
   for an SD1.5 UNet + 4-channel TAESD checkpoint without text encoder) accept, for the
   end-to-end server test and the ``--tiny`` demo. Generated once per recipe into a cache folder, never
   committed.

Weights: biases 0, norm weights/scales 1, embeddings randn*0.02, every other weight randn/sqrt(fan_in)
(about 0.02 at FLUX.1's width), so activations stay finite in fp32 and outputs depend on their inputs.

CLI: ``python -m vmdiff_cli.tiny_models --out DIR [--yaml extra_model_paths.yaml]``.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# folder kind (ComfyUI folder_paths name) -> file name used by the pack's workflows
REAL_LOADER_FILES = {
    "diffusion_models": "flux1-krea-dev.safetensors",
    "clip_vision": "sigclip_vision_patch14_384.safetensors",
    "style_models": "flux1-redux-dev.safetensors",
    "vae": "ae.safetensors",
    "text_encoders": "clip_l.safetensors",
    "checkpoints": "v1-5-pruned-emaonly-fp16.safetensors",
}

TINY_FLUX_CONFIG = dict(
    image_model="flux", in_channels=16, out_channels=16, hidden_size=64, num_heads=2, axes_dim=[8, 12, 12],
    mlp_ratio=2.0, depth=1, depth_single_blocks=1, theta=10000, patch_size=2, qkv_bias=True,
    guidance_embed=True, txt_ids_dims=[],
)
# FLUX.1 at the width ComfyUI's detector forces (24 heads x 128), with a single double block.
REAL_FLUX_CONFIG = dict(
    image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=3072,
    num_heads=24, axes_dim=[16, 56, 56], mlp_ratio=4.0, depth=1, depth_single_blocks=0, theta=10000,
    patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[],
)
# SD1.5's UNet (openaimodel.UNetModel: ε-prediction, cross-attention to CLIP-L) with one resolution level and one
# ResBlock + transformer per block; 32 channels in-process.
TINY_SD15_UNET_CONFIG = dict(
    use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
    in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1], channel_mult=[1], transformer_depth=[1],
    transformer_depth_output=[1, 1], transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=32,
    use_temporal_resblock=False, use_temporal_attention=False,
)
# The checkpoint file: ComfyUI detects SD1.5 by model_channels 320 and context_dim 768 (25.8 M params).
REAL_SD15_UNET_CONFIG = dict(TINY_SD15_UNET_CONFIG, model_channels=320, context_dim=768)
TINY_SIGLIP_CONFIG = {
    "num_channels": 3, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 32, "image_size": 56,
    "intermediate_size": 64, "model_type": "siglip_vision_model", "num_attention_heads": 2,
    "num_hidden_layers": 2, "patch_size": 14, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
# Parameters set to constants by key: the Flux latent scale/shift, and the TAESD decoder's last conv bias so that
# random latents decode to mid-grey images instead of half of the pixels clamping to black.
CONSTANT_PARAMS = {"vae_scale": 0.3611, "vae_shift": 0.1159, "taesd_decoder.19.bias": 0.5,
                   "first_stage_model.vae_scale": 1.0, "first_stage_model.vae_shift": 0.0,
                   "first_stage_model.taesd_decoder.19.bias": 0.5}


def ensure_comfy() -> None:
    """Make ``comfy`` importable on the CPU (vmdiff_cli.comfy_env), unless this process already runs ComfyUI."""
    if "comfy.model_management" in sys.modules:
        return
    from vmdiff_cli.comfy_env import boot_comfy_inprocess

    boot_comfy_inprocess()


def default_tiny_models_dir() -> Path:
    """``$VMDIFF_TINY_MODELS_DIR`` or ``<repo>/.cache/tiny_models`` (gitignored)."""
    return Path(os.environ.get("VMDIFF_TINY_MODELS_DIR", REPO_ROOT / ".cache" / "tiny_models"))


# --------------------------------------------------------------------------------------------------
# deterministic weights

def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _init_value(module: torch.nn.Module, pname: str, shape: tuple, gen: torch.Generator) -> torch.Tensor:
    """fp32 CPU value for parameter ``pname`` of ``module`` (ComfyUI ops skip init, so everything is set here)."""
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, getattr(torch.nn, "RMSNorm", torch.nn.LayerNorm))
    if pname == "bias":
        return torch.zeros(shape)
    if pname == "scale" or (pname == "weight" and isinstance(module, norms)):
        return torch.ones(shape)
    if isinstance(module, torch.nn.Embedding):
        return torch.randn(shape, generator=gen) * 0.02
    if pname == "weight" and len(shape) >= 2:
        return torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
    raise ValueError(f"no init rule for {type(module).__name__}.{pname} {shape}")


def _random_tensors(model: torch.nn.Module, seed: int, name: str, dtype=torch.float32):
    """Yield ``(key, tensor)`` for every parameter of ``model`` (which may live on the meta device)."""
    gen = _generator(seed, name)
    for mname, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None:
                key = f"{mname}.{pname}" if mname else pname
                if key in CONSTANT_PARAMS:
                    value = torch.full(tuple(p.shape), CONSTANT_PARAMS[key])
                else:
                    value = _init_value(module, pname, tuple(p.shape), gen)
                yield key, value.to(dtype)


def _random_state_dict(model: torch.nn.Module, seed: int, name: str, dtype=torch.float32) -> dict:
    sd = dict(_random_tensors(model, seed, name, dtype))
    missing = set(model.state_dict()) - set(sd)
    if missing:  # persistent buffers would be left uninitialised by the loaders
        raise ValueError(f"{name}: no values for {sorted(missing)[:5]}")
    return sd


@torch.no_grad()
def _fill_(model: torch.nn.Module, seed: int, name: str) -> torch.nn.Module:
    """Fill a materialised module in place, one tensor at a time (same values as ``_random_state_dict``)."""
    params = dict(model.named_parameters())
    for key, value in _random_tensors(model, seed, name):
        params.pop(key).copy_(value)
    missing = set(model.state_dict()) - {k for k, _ in model.named_parameters()}
    if params or missing:
        raise ValueError(f"{name}: not filled {sorted(set(params) | missing)[:5]}")
    return model


# --------------------------------------------------------------------------------------------------
# A. in-process stand-ins

def tiny_flux(seed: int = 0, context_dim: int = 64, vec_dim: int = 32):
    """Replaces FLUX.1-dev (``UNETLoader``'s MODEL): a real ``comfy.model_base.Flux`` (ModelSamplingFlux + CONST,
    Flux latent format, guidance embedding) with hidden 64 / 2 heads / 1+1 blocks, wrapped in a ModelPatcher."""
    ensure_comfy()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    model_config = comfy.supported_models.Flux(dict(TINY_FLUX_CONFIG, context_in_dim=context_dim, vec_in_dim=vec_dim))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    _fill_(model.diffusion_model, seed, "tiny_flux")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def _tiny_siglip_json() -> str:
    text = json.dumps(TINY_SIGLIP_CONFIG, indent=1, sort_keys=True)
    path = Path(tempfile.gettempdir()) / f"vmdiff_tiny_siglip_{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return str(path)


def tiny_clip_vision(seed: int = 0):
    """Replaces SigLIP-so400m-384 (``CLIPVisionLoader``'s CLIP_VISION): a real ``comfy.clip_vision.ClipVisionModel``
    built from a tiny SigLIP JSON (hidden 32, 2 layers, 56 px / patch 14 -> 16 tokens)."""
    ensure_comfy()
    import comfy.clip_vision

    clip_vision = comfy.clip_vision.ClipVisionModel(_tiny_siglip_json())
    missing, unexpected = clip_vision.load_sd(_random_state_dict(clip_vision.model, seed, "tiny_clip_vision"))
    assert not missing and not unexpected, (missing, unexpected)
    return clip_vision


def tiny_style_model(seed: int = 0, redux_dim: int = 32, context_dim: int = 64):
    """Replaces FLUX.1-Redux (``StyleModelLoader``'s STYLE_MODEL): ``comfy.sd.StyleModel`` around a real
    ``ReduxImageEncoder(redux_dim, txt_in_features=context_dim)``; maps (B,N,redux_dim) -> (B,N,context_dim)."""
    ensure_comfy()
    import comfy.ldm.flux.redux
    import comfy.sd

    encoder = comfy.ldm.flux.redux.ReduxImageEncoder(redux_dim=redux_dim, txt_in_features=context_dim)
    return comfy.sd.StyleModel(_fill_(encoder, seed, "tiny_style_model"))


def tiny_vae(seed: int = 0, latent_channels: int = 16):
    """Replaces the FLUX.1 VAE (``VAELoader``'s VAE): ``comfy.sd.VAE`` in the TAESD layout with 16 latent channels
    (8x down/up-scale, vae_scale 0.3611, vae_shift 0.1159), built from an in-memory state dict.
    ``latent_channels=4``: an SD1.5-shaped VAE."""
    ensure_comfy()
    import comfy.sd
    import comfy.taesd.taesd

    with torch.device("meta"):
        shapes = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    return comfy.sd.VAE(sd=_random_state_dict(shapes, seed, "vae"))


def tiny_flux_conditioning(seed: int = 0, vec_dim: int = 32, text_tokens: int = 0, context_dim: int = 64):
    """Replaces ``CLIPTextEncode`` on Flux's DualCLIP:
    CONDITIONING ``[[(1,text_tokens,context_dim), {pooled_output}]]``.

    With ``text_tokens=0`` (Redux-only context) append image tokens (StyleModelApply) before sampling: ComfyUI's
    Flux DiT cannot run on a context of zero tokens."""
    gen = _generator(seed, "tiny_flux_conditioning")
    tokens = torch.randn((1, text_tokens, context_dim), generator=gen)
    return [[tokens, {"pooled_output": torch.randn((1, vec_dim), generator=gen)}]]


TINY_CLIP_L_CONFIG = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1,
                          projection_dim=32)


def tiny_clip_l(seed: int = 0):
    """Replaces CLIP-L (``CLIPLoader`` type ``stable_diffusion``'s CLIP): a real ``comfy.sd.CLIP`` around SD1's
    CLIP-L model with ComfyUI's own tokenizer, 32 wide and one layer, so its unprojected pooled vector is 32 wide
    (``tiny_flux``'s vec_dim)."""
    ensure_comfy()
    import comfy.sd
    import comfy.sd1_clip

    class Target:
        params = {}
        clip = comfy.sd1_clip.SD1ClipModel
        tokenizer = comfy.sd1_clip.SD1Tokenizer

    clip = comfy.sd.CLIP(Target(), model_options={"clip_l_model_config": dict(TINY_CLIP_L_CONFIG),
                                                  "dtype": torch.float32})
    _fill_(clip.cond_stage_model.clip_l.transformer, seed, "tiny_clip_l")
    return clip


def tiny_sd15(seed: int = 0, context_dim: int = 32):
    """Replaces an SD1.5 checkpoint's MODEL: a real ``comfy.model_base.BaseModel`` of ``supported_models.SD15``
    (ModelSamplingDiscrete + EPS, SD15 latent format) around a 32-channel UNetModel, in a ModelPatcher."""
    ensure_comfy()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    model_config = comfy.supported_models.SD15(dict(TINY_SD15_UNET_CONFIG, context_dim=context_dim))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    _fill_(model.diffusion_model, seed, "tiny_sd15")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def tiny_sd15_conditioning(seed: int = 0, tokens: int = 77, context_dim: int = 32):
    """Replaces ``CLIPTextEncode`` on SD1.5's CLIP-L: CONDITIONING ``[[(1, tokens, context_dim), {}]]``."""
    return [[torch.randn((1, tokens, context_dim), generator=_generator(seed, "tiny_sd15_conditioning")), {}]]


# --------------------------------------------------------------------------------------------------
# B. files for ComfyUI's own loaders

def _real_loader_recipes() -> dict:
    """folder kind -> factory of the module (on the meta device) whose full key set the file must hold."""
    import comfy.clip_model
    import comfy.ldm.flux.model
    import comfy.ldm.flux.redux
    import comfy.ldm.modules.diffusionmodules.openaimodel
    import comfy.ops
    import comfy.taesd.taesd

    comfy_dir = Path(comfy.clip_model.__file__).parent

    def json_config(name):
        return json.loads((comfy_dir / name).read_text())

    def sd15_checkpoint():  # CheckpointLoaderSimple: model.diffusion_model.* (UNet) + first_stage_model.* (TAESD)
        ckpt, ckpt.model = torch.nn.Module(), torch.nn.Module()
        ckpt.model.diffusion_model = comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel(
            **REAL_SD15_UNET_CONFIG, num_heads=8, num_head_channels=-1, operations=comfy.ops.disable_weight_init)
        ckpt.first_stage_model = comfy.taesd.taesd.TAESD(latent_channels=4)
        return ckpt

    return {
        "diffusion_models": lambda: comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init,
                                                              **REAL_FLUX_CONFIG),
        "clip_vision": lambda: comfy.clip_model.CLIPVisionModelProjection(
            json_config("clip_vision_siglip_384.json"), torch.float32, None, comfy.ops.manual_cast),
        "style_models": lambda: comfy.ldm.flux.redux.ReduxImageEncoder(),
        "vae": lambda: comfy.taesd.taesd.TAESD(latent_channels=16),
        "text_encoders": lambda: comfy.clip_model.CLIPTextModel(
            json_config("sd1_clip_config.json"), torch.float32, None, comfy.ops.manual_cast),
        "checkpoints": sd15_checkpoint,
    }


def _comfyui_version() -> str:
    """ComfyUI's version, read from its tree without importing (and booting) it."""
    if "comfy" in sys.modules:
        root = Path(sys.modules["comfy"].__path__[0]).parent
    else:
        from vmdiff_cli.comfy_env import comfy_path

        root = comfy_path()
    match = re.search(r"__version__\s*=\s*[\"']([^\"']+)", (root / "comfyui_version.py").read_text())
    return match.group(1) if match else "unknown"


def source_digest(*parts) -> str:
    """16 hex digits naming a stand-in recipe (the cache markers of tiny_models, tiny_scorers and the test CLIP towers):
    functions and classes count by their source, bytes as they are, anything else by its repr."""
    text = "".join(inspect.getsource(p) if inspect.isfunction(p) or inspect.isclass(p)
                   else p.decode() if isinstance(p, bytes) else p if isinstance(p, str) else repr(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe_hash(seed: int = 0) -> str:
    """The real-loader files' recipe: the generator's source (the functions and constants that shape the files), the
    ComfyUI version and the seed. Editing anything else in this module keeps the cache."""
    return source_digest(_generator, _init_value, _random_tensors, _random_state_dict, _real_loader_recipes,
                       write_real_loader_models, (REAL_LOADER_FILES, REAL_FLUX_CONFIG, REAL_SD15_UNET_CONFIG,
                                                  CONSTANT_PARAMS, _comfyui_version(), seed))


def write_real_loader_models(models_dir: Path | None = None, seed: int = 0, verbose: bool = False) -> dict[str, Path]:
    """Write (or reuse) the five real-loader files under ``models_dir/<kind>/`` and return ``{kind: path}``.

    Each model is built on the meta device from ComfyUI's classes, filled tensor by tensor (fp16) and saved,
    one model at a time. A ``.recipe-<hash>`` marker, written last, makes later calls reuse the files."""
    models_dir = Path(models_dir or default_tiny_models_dir())
    paths = {kind: models_dir / kind / name for kind, name in REAL_LOADER_FILES.items()}
    marker = models_dir / f".recipe-{recipe_hash(seed)}"
    if marker.is_file() and all(p.is_file() for p in paths.values()):
        if verbose:
            print(f"reusing {models_dir} ({marker.name})")
        return paths

    ensure_comfy()
    from safetensors.torch import save_file

    for old in models_dir.glob(".recipe-*"):
        old.unlink()
    report = {}
    for kind, factory in _real_loader_recipes().items():
        start = time.perf_counter()
        with torch.device("meta"):
            model = factory()
        sd = _random_state_dict(model, seed, kind, torch.float16)
        del model
        paths[kind].parent.mkdir(parents=True, exist_ok=True)
        tmp = paths[kind].with_suffix(f".{os.getpid()}.tmp")
        save_file(sd, str(tmp), metadata={"vmdiff_tiny_models": f"random weights, seed {seed}"})
        os.replace(tmp, paths[kind])
        params = sum(t.numel() for t in sd.values())
        del sd
        report[kind] = {"file": str(paths[kind].relative_to(models_dir)), "params": params,
                        "bytes": paths[kind].stat().st_size, "seconds": round(time.perf_counter() - start, 2)}
        if verbose:
            r = report[kind]
            print(f"wrote {r['file']}: {r['params'] / 1e6:.1f} M params, {r['bytes'] / 2**20:.1f} MiB, "
                  f"{r['seconds']} s")
    marker.write_text(json.dumps(report, indent=1))
    return paths


def write_real_loader_models_in_child(scorers: bool = False, verbose: bool = False) -> Path:
    """``write_real_loader_models`` into ``default_tiny_models_dir()`` (with ``scorers`` also the scorer stand-ins of
    vmdiff_cli/tiny_scorers.py) in a child process: it imports ComfyUI in-process, and its memory is returned before a
    server starts. Returns the folder."""
    code = ("from vmdiff_cli.tiny_models import default_tiny_models_dir as d, write_real_loader_models as w; "
            f"w(d(), verbose={verbose})")
    if scorers:
        code += "; from vmdiff_cli.tiny_scorers import ensure_tiny_scorers as s; s(d())"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
    return Path(default_tiny_models_dir())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write tiny random-weight model files for ComfyUI's real loaders.")
    parser.add_argument("--out", type=Path, default=None, help=f"models dir (default {default_tiny_models_dir()})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--yaml", type=Path, default=None, help="also write an --extra-model-paths-config YAML here")
    parser.add_argument("--custom-nodes", type=Path, nargs="*", default=[], help="custom_nodes folders for the YAML")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    paths = write_real_loader_models(args.out, seed=args.seed, verbose=True)
    for kind, path in paths.items():
        print(f"{kind:17s} {path}  ({path.stat().st_size / 2**20:.1f} MiB)")
    if args.yaml:
        from vmdiff_cli.comfy_server import write_extra_model_paths_yaml

        print("yaml", write_extra_model_paths_yaml(args.out or default_tiny_models_dir(), args.yaml, args.custom_nodes))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
