"""Device benchmark at real size: seconds per DiT pass, seconds and peak VRAM per stage, under ComfyUI's own model
management, for VMDiff's stages beside the core graph they replace, in one command.

    python -m benchmarks.bench_gpu                       # CUDA, real shapes, 512² and 1024², bf16 + fp8, caps
    python -m benchmarks.bench_gpu --quick               # CUDA, 512² bf16 only
    python -m benchmarks.bench_gpu --device cpu --tiny   # the CPU smoke test (tests/server/test_bench_gpu.py)

Real weights are not needed: time per pass and memory depend on the shapes and on ComfyUI's loading, casting and
offloading, not on the values. So the script (1) writes random-weight files of the real shapes (FLUX.1 [dev] 12 B
DiT, SigLIP so400m + Redux, the Flux VAE, CLIP-L, the scorers DINOv2-base, OpenCLIP ViT-bigG-14,
grounding-dino-tiny; FLUX.2 [klein] 4B and the FLUX.2 VAE when the running ComfyUI can load [klein]), building each
model on the meta device and streaming one tensor at a time, filled on the device, into a safetensors file; (2)
loads them through ComfyUI's loader nodes (UNETLoader with weight_dtype default / fp8_e4m3fn, CLIPLoader,
CLIPVisionLoader, StyleModelLoader, VAELoader) and the pack's scorer loaders; (3) runs, in-process under
comfy.model_management, Blending Noise, Mixing Denoise, one Auto-Tune candidate (Mixing Denoise + VAE Decode + the
Similarity Score) and the core graph as the baseline: FLUX.1, the two-Redux KSampler graph of
workflows/core_two_redux.json (its T5 replaced by CLIP-L, as the tests do); FLUX.2, the two-reference sampling of
workflows/vmdiff_flux2.json; (4) repeats under memory caps emulating 24 GB and 16 GB cards: ComfyUI's reserve
(``--reserve-vram``'s variable, comfy.model_management.EXTRA_RESERVED_VRAM, set to total − cap) so that its loader
offloads as on that card, plus torch.cuda.set_per_process_memory_fraction(cap / total) so that going over the cap is
an out-of-memory error, reported as "no" in the table's "fits" column.

``--tiny`` runs the same code on stand-ins small enough for a CPU smoke test (hidden 64 DiTs, the TAESD-layout VAE,
the test suite's in-memory CLIP-L / SigLIP / Redux and its tiny scorer files): its numbers mean nothing; it checks
that the script still builds, loads, runs and prints. Its FLUX.2 VAE is a 128-channel TAESD (8×, where FLUX.2's is
16×): ComfyUI fixes the FLUX.2 VAE's widths (84 M parameters), which on the CPU costs about 0.6 GB of host memory.
FLUX.2 runs in bf16 only there (the fp8 cast is the same UNETLoader path, run on FLUX.1).

It prints how long each part took, the peak host memory, and one markdown table. See docs/gpu_benchmark.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import struct
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

GB = 1024 ** 3
LABELS = ("cat", "coffee cup")
STAGES = ("Baseline", "Blending Noise", "Mixing Denoise", "Auto-Tune candidate")
BASELINES = {"flux1": "core_two_redux", "flux2": "core two-reference"}

# FLUX.1 [dev] as released (ComfyUI detects it from these shapes): 19 double + 38 single blocks, 11.9 B parameters.
FLUX1_DEV_DEPTH = dict(depth=19, depth_single_blocks=38)
# The Flux VAE (ae.safetensors): comfy.ldm.modules.diffusionmodules.model Encoder/Decoder, 16 latent channels.
FLUX_VAE_DDCONFIG = dict(double_z=True, z_channels=16, resolution=256, in_channels=3, out_ch=3, ch=128,
                         ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)
# FLUX.2 [klein] 4B as released: hidden 3072 = 24 heads × 128 (4 rotary axes of 32), 5 double + 20 single blocks,
# a 7680-wide text input (3 × 2560 Qwen3-4B layers), no guidance embedding: 3.9 B parameters.
KLEIN_4B_SHAPE = dict(hidden_size=3072, num_heads=24, axes_dim=[32, 32, 32, 32], depth=5, depth_single_blocks=20,
                      context_in_dim=7680, guidance_embed=False)
KLEIN_WORKFLOW = "vmdiff_flux2"

# What the benchmark's DiT files are called (folder diffusion_models) per (family, tiny).
DIT_FILES = {("flux1", False): "vmdiff-bench-flux1-dev.safetensors", ("flux1", True): "vmdiff-bench-flux1-tiny"
             ".safetensors", ("flux2", False): "vmdiff-bench-flux2-klein-4b.safetensors",
             ("flux2", True): "vmdiff-bench-flux2-tiny.safetensors"}
FAMILY_LABELS = {("flux1", False): "FLUX.1 [dev]", ("flux1", True): "FLUX.1 stand-in",
                 ("flux2", False): "FLUX.2 [klein] 4B", ("flux2", True): "FLUX.2 stand-in"}


# --------------------------------------------------------------------------------------------------
# 1. random-weight files

def _init_std(module: torch.nn.Module, pname: str, shape: tuple) -> float | None:
    """vmdiff_cli/tiny_models._init_value's rule as a (mean-0) std: None = constant (0 for biases, 1 for norm
    weights/scales); embeddings 0.02; matrices 1/sqrt(fan_in); any other vector 0.02."""
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, getattr(torch.nn, "RMSNorm", torch.nn.LayerNorm))
    if pname == "bias" or pname == "scale" or (pname == "weight" and isinstance(module, norms)):
        return None
    if isinstance(module, torch.nn.Embedding) or len(shape) < 2:
        return 0.02
    return 1.0 / math.sqrt(math.prod(shape[1:]))


def _random_tensor(module, pname, shape, dtype, device, gen, constants, key):
    if key in constants:
        return torch.full(shape, constants[key], dtype=dtype, device=device)
    std = _init_std(module, pname, shape)
    if std is None:
        return (torch.zeros if pname == "bias" else torch.ones)(shape, dtype=dtype, device=device)
    out = torch.empty(shape, dtype=dtype, device=device)
    return out.normal_(0.0, std, generator=gen)


_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float8_e4m3fn: "F8_E4M3",
              torch.int64: "I64"}


@torch.no_grad()
def write_module_file(model: torch.nn.Module, path: Path, dtype: torch.dtype, device: str, seed: int = 0,
                      constants: dict | None = None, prefix: str = "") -> dict:
    """Stream random weights for every parameter of ``model`` (built on the meta device) into the safetensors file
    ``path``: each tensor is filled on ``device`` (torch.empty + normal_, never a CPU randn of 12 B values), copied
    to the host and appended, so host memory holds one tensor at a time. Keys are ``prefix + name``.

    ``constants`` {key: value} sets a parameter to a constant, and gives the value of a persistent buffer (integer
    buffers keep their dtype); any other persistent buffer raises ValueError (the loaders would leave it
    uninitialised). Returns {"params", "bytes", "seconds"}."""
    start = time.perf_counter()
    constants = constants or {}
    entries = []  # (key, module, name, shape, dtype)
    for mname, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None:
                entries.append((f"{mname}.{pname}" if mname else pname, module, pname, tuple(p.shape), dtype))
    params = {e[0] for e in entries}
    buffers = {k: v for k, v in model.state_dict().items() if k not in params}
    missing = [k for k in buffers if k not in constants]
    if missing:
        raise ValueError(f"{path.name}: persistent buffers without values {missing[:5]}")
    for key, buf in buffers.items():
        entries.append((key, None, key.rsplit(".", 1)[-1], tuple(buf.shape),
                        buf.dtype if not buf.dtype.is_floating_point else dtype))
    header, offset = {"__metadata__": {"vmdiff_bench": f"random weights of the real shapes, seed {seed}"}}, 0
    for key, _, _, shape, dt in entries:
        size = math.prod(shape) * torch.empty((), dtype=dt).element_size()
        header[prefix + key] = {"dtype": _ST_DTYPES[dt], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    gen = torch.Generator(device=device).manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for key, module, pname, shape, dt in entries:
            t = _random_tensor(module, pname, shape, dt, device, gen, constants, key)
            f.write(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    os.replace(tmp, path)
    return {"params": sum(math.prod(e[3]) for e in entries if e[1] is not None), "bytes": path.stat().st_size,
            "seconds": time.perf_counter() - start}


def flux_config(family: str, tiny: bool) -> dict:
    """The Flux DiT config of a family: tiny (--tiny) = the test suite's stand-ins (vmdiff_cli/tiny_models.
    TINY_FLUX_CONFIG, 64-wide context and 32-wide pooled vector as tiny_flux; vmdiff_cli/tiny_flux2.
    TINY_FLUX2_CONFIG); real = FLUX.1 [dev] and FLUX.2 [klein] 4B."""
    from vmdiff_cli import tiny_flux2, tiny_models

    if family == "flux1":
        if tiny:
            return dict(tiny_models.TINY_FLUX_CONFIG, context_in_dim=64, vec_in_dim=32)
        return dict(tiny_models.REAL_FLUX_CONFIG, **FLUX1_DEV_DEPTH)
    return dict(tiny_flux2.TINY_FLUX2_CONFIG, **({} if tiny else KLEIN_4B_SHAPE))


def _flux_module(config: dict):
    import comfy.ldm.flux.model
    import comfy.ops

    return comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, **config)


def _flux_vae():
    import comfy.ldm.modules.diffusionmodules.model as vae_model

    vae = torch.nn.Module()
    vae.encoder = vae_model.Encoder(**FLUX_VAE_DDCONFIG)
    vae.decoder = vae_model.Decoder(**FLUX_VAE_DDCONFIG)
    return vae


def _flux2_vae():
    from comfy.ldm.models.autoencoder import AutoencoderKL

    from vmdiff_cli.tiny_flux2 import FLUX2_VAE_DDCONFIG

    return AutoencoderKL(ddconfig=dict(FLUX2_VAE_DDCONFIG), embed_dim=FLUX2_VAE_DDCONFIG["z_channels"])


def _taesd128():
    import comfy.taesd.taesd

    return comfy.taesd.taesd.TAESD(latent_channels=128)


def _flux2_vae_constants() -> dict:
    """FLUX.2's VAE batch-norm statistics (running mean 0, variance 1), as vmdiff_cli/tiny_flux2 sets them."""
    return {"bn.running_mean": 0.0, "bn.running_var": 1.0, "bn.num_batches_tracked": 0}


def file_recipes(families: list[str], tiny: bool) -> dict:
    """{label: (folder kind, file name, meta-module factory, dtype, constants)} of the files write_module_file
    writes.

    Real: the DiTs at their released shapes, the Flux VAE, and vmdiff_cli/tiny_models' real-loader recipes at full size
    (SigLIP so400m, Redux, CLIP-L). Tiny: the stand-in DiTs (hidden 64) and the TAESD-layout 16-channel VAE; CLIP-L,
    SigLIP and Redux are then the suite's in-memory stand-ins (ComfyUI 0.8.0's loaders fix their widths: no small file
    of theirs loads). FLUX.2's VAE is full size in both (ComfyUI fixes its widths too; 84 M parameters)."""
    from vmdiff_cli import tiny_models

    recipes = tiny_models._real_loader_recipes()
    out = {}
    if "flux1" in families:
        out["flux1 DiT"] = ("diffusion_models", DIT_FILES["flux1", tiny],
                            lambda: _flux_module(flux_config("flux1", tiny)), torch.bfloat16, {})
        if tiny:
            out["flux1 VAE"] = ("vae", "vmdiff-bench-taesd16.safetensors", recipes["vae"], torch.float16,
                                tiny_models.CONSTANT_PARAMS)
        else:
            out["flux1 VAE"] = ("vae", "vmdiff-bench-ae.safetensors", _flux_vae, torch.bfloat16, {})
            out["SigLIP"] = ("clip_vision", "vmdiff-bench-siglip-so400m.safetensors", recipes["clip_vision"],
                             torch.float16, {})
            out["Redux"] = ("style_models", "vmdiff-bench-redux.safetensors", recipes["style_models"],
                            torch.bfloat16, {})
    if not tiny:
        out["CLIP-L"] = ("text_encoders", "vmdiff-bench-clip_l.safetensors", recipes["text_encoders"],
                         torch.float16, {})
    if "flux2" in families:
        out["flux2 DiT"] = ("diffusion_models", DIT_FILES["flux2", tiny],
                            lambda: _flux_module(flux_config("flux2", tiny)), torch.bfloat16, {})
        if tiny:  # 128 latent channels (what the FLUX.2 DiT reads) at 8x, not 16x: see the docstring
            out["flux2 VAE"] = ("vae", "vmdiff-bench-taesd128.safetensors", _taesd128, torch.float16,
                                tiny_models.CONSTANT_PARAMS)
        else:
            out["flux2 VAE"] = ("vae", "vmdiff-bench-flux2-vae.safetensors", _flux2_vae, torch.bfloat16,
                                _flux2_vae_constants())
    return out


def write_real_scorers(models_dir: Path, device: str, seed: int = 0) -> dict:
    """DINOv2-base, OpenCLIP ViT-bigG-14 and grounding-dino-tiny at their released shapes, in the layouts the pack's
    loaders read (Hugging Face folders; an OpenCLIP safetensors checkpoint). Returns the loader widget values."""
    import open_clip
    from transformers import (BertConfig, BertTokenizer, Dinov2Config, Dinov2Model, GroundingDinoConfig,
                              GroundingDinoForObjectDetection, GroundingDinoImageProcessor, GroundingDinoProcessor)

    from vmdiff_cli.tiny_scorers import tiny_bert_vocab

    names = {"dinov2": "vmdiff-bench-dinov2-base", "open_clip_model": "ViT-bigG-14",
             "open_clip": "vmdiff-bench-vit-bigg-14.safetensors", "grounding_dino": "vmdiff-bench-grounding-dino-tiny"}
    # DINOv2-base (86 M) and grounding-dino-tiny (172 M): transformers' own init on the host is seconds.
    dino = models_dir / "dinov2" / names["dinov2"]
    Dinov2Model(Dinov2Config()).save_pretrained(dino)  # Dinov2Config() is dinov2-base
    gdino = models_dir / "grounding-dino" / names["grounding_dino"]
    gdino.mkdir(parents=True, exist_ok=True)
    vocab = gdino / "vocab.txt"
    vocab.write_text("\n".join(tiny_bert_vocab()) + "\n")  # token ids only; the text encoder is bert-base-sized
    GroundingDinoForObjectDetection(GroundingDinoConfig(text_config=BertConfig())).save_pretrained(gdino)
    GroundingDinoProcessor(GroundingDinoImageProcessor(), BertTokenizer(str(vocab))).save_pretrained(gdino)
    # ViT-bigG-14 (2.5 B): built on the meta device, filled on the device.
    with torch.device("meta"):
        clip = open_clip.create_model(names["open_clip_model"], pretrained=None, device="meta")
    write_module_file(clip, models_dir / "open_clip" / names["open_clip"], torch.float16, device, seed,
                      constants={"logit_scale": math.log(1 / 0.07)})
    return names


def write_tiny_scorer_files(models_dir: Path, seed: int = 0) -> dict:
    """The suite's tiny DINOv2, OpenCLIP and Hugging Face GroundingDINO (vmdiff_cli/tiny_scorers: hidden 32, one
    layer) written into ``models_dir``, in-process (only the three the Similarity Score needs, not the whole cached
    set). Returns the loader widget values."""
    from vmdiff_cli import tiny_scorers as ts

    names = ts.TINY_SCORER_NAMES
    bert = models_dir / "bert-base-uncased" / names["bert"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ts.write_bert(bert)
        ts.write_dinov2(models_dir / "dinov2" / names["dinov2"])
        (models_dir / "open_clip").mkdir(parents=True, exist_ok=True)
        ts.write_open_clip(models_dir / "open_clip")
        ts.write_grounding_dino_hf(models_dir / "grounding-dino" / names["grounding_dino_hf"], bert)
    return {"dinov2": names["dinov2"], "open_clip_model": names["open_clip_model"], "open_clip": names["open_clip"],
            "grounding_dino": names["grounding_dino_hf"]}


def prepare_models(out: Path, families: list[str], tiny: bool, device: str, timings: dict) -> dict:
    """Write every file under ``out/<kind>/``; returns {label: file name} and the scorer loader widget values."""
    names = {}
    for label, (kind, name, factory, dtype, constants) in file_recipes(families, tiny).items():
        start = time.perf_counter()
        with torch.device("meta"):
            module = factory()
        log(f"write {label}")
        info = write_module_file(module, out / kind / name, dtype, device, constants=constants)
        del module
        names[label] = name
        timings[f"write {label} ({info['params'] / 1e9:.3f} B params, {info['bytes'] / GB:.3f} GB)"] = \
            time.perf_counter() - start
    start = time.perf_counter()
    if tiny:
        names.update(write_tiny_scorer_files(out))
        timings["write scorers (tiny DINOv2, OpenCLIP, GroundingDINO)"] = time.perf_counter() - start
    else:
        names.update(write_real_scorers(out, device))
        timings["write scorers (DINOv2-base, ViT-bigG-14, grounding-dino-tiny)"] = time.perf_counter() - start
    return names


# --------------------------------------------------------------------------------------------------
# 2. ComfyUI in-process, its loaders, its model management

def boot(device: str, out: Path):
    from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

    boot_comfy_inprocess(cpu=(device == "cpu"))
    load_pack()
    import folder_paths

    for kind in ("diffusion_models", "vae", "clip_vision", "style_models", "text_encoders", "dinov2", "open_clip",
                 "grounding-dino"):
        folder_paths.add_model_folder_path(kind, str(out / kind), is_default=True)
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False


def call(class_type: str, **inputs):
    """Run one node the way ComfyUI's executor would (V1: its FUNCTION; V3: execute) and return its outputs."""
    import nodes

    cls = nodes.NODE_CLASS_MAPPINGS[class_type]
    if hasattr(cls, "define_schema"):
        return tuple(cls.execute(**inputs).result)
    return tuple(getattr(cls(), cls.FUNCTION)(**inputs))


def klein_support() -> str | None:
    """None if the running ComfyUI loads FLUX.2 [klein] 4B, else why not. Asks its own detector
    (comfy.model_detection.detect_unet_config) about [klein] 4B's key/shape set built on the meta device: 0.8.0 fixes
    FLUX.2 at 48 heads (FLUX.2 [dev]'s 6144 wide), so [klein]'s 3072 would be read as 48 heads × 64 against rotary
    axes of 128."""
    import comfy.model_detection

    config = flux_config("flux2", tiny=False)
    with torch.device("meta"):
        sd = _flux_module(config).state_dict()
    found = comfy.model_detection.detect_unet_config(sd, "")
    if found is None or found.get("image_model") != "flux2":
        return ("its detector does not recognise the [klein] 4B keys as FLUX.2 (found "
                f"{found and found.get('image_model')})")
    heads, axes = found.get("num_heads"), sum(found.get("axes_dim") or [])
    if heads != config["num_heads"] or heads * axes != config["hidden_size"]:
        return (f"its detector reads [klein] 4B (hidden {config['hidden_size']} = {config['num_heads']} heads × "
                f"{sum(config['axes_dim'])}) as {heads} heads with rotary axes of {axes}: it fixes FLUX.2 at "
                f"FLUX.2 [dev]'s head count")
    return None


@contextmanager
def detector_told(configs: list[dict]):
    """--tiny only: ComfyUI 0.8.0's detector reads a Flux file's widths, depths and switches from its keys but fixes
    the head count, the rotary axes and the MLP ratio at the released models' values (24 × 128 for FLUX.1, 48 × 128
    for FLUX.2), so no hidden-64 stand-in file would load. Within this block, a detected Flux config whose image
    model and hidden size match one of ``configs`` gets that config's heads, axes and MLP ratio; everything else
    (UNETLoader, the dtype casts, ModelPatcher) is ComfyUI's own."""
    import comfy.model_detection as md

    original = md.detect_unet_config

    def detect(state_dict, key_prefix, metadata=None):
        found = original(state_dict, key_prefix, metadata=metadata)
        for c in configs:
            if found and found.get("image_model") == c["image_model"] and found.get("hidden_size") == c["hidden_size"]:
                found.update(num_heads=c["num_heads"], axes_dim=list(c["axes_dim"]), mlp_ratio=c["mlp_ratio"])
        return found

    md.detect_unet_config = detect
    try:
        yield
    finally:
        md.detect_unet_config = original


def load_shared(names: dict, tiny: bool, timings: dict) -> dict:
    """CLIP-L and the scorers through ComfyUI's and the pack's loader nodes (ComfyUI moves them to the device on
    use); --tiny: the suite's in-memory tiny CLIP-L."""
    from vmdiff_cli import tiny_models

    from vmdiff_pack.nodes.score_loaders import VMDiffLoadDINOv2, VMDiffLoadGroundingDINO, VMDiffLoadOpenCLIP
    from vmdiff_pack.vmdiff_comfy.scoring import detection

    steps = {
        "clip": (lambda: tiny_models.tiny_clip_l(0)) if tiny else
        (lambda: call("CLIPLoader", clip_name=names["CLIP-L"], type="stable_diffusion")[0]),
        "dino": lambda: VMDiffLoadDINOv2.execute(names["dinov2"]).result[0],
        "open_clip": lambda: VMDiffLoadOpenCLIP.execute(names["open_clip_model"], names["open_clip"]).result[0],
        "grounding_dino": lambda: VMDiffLoadGroundingDINO.execute(names["grounding_dino"],
                                                                  detection.BUILTIN_GDINO_CONFIG).result[0],
    }
    return _load_all(steps, {"clip"} if tiny else set(), timings)


def load_family(family: str, names: dict, tiny: bool, timings: dict) -> dict:
    """The family's VAE and image encoders (FLUX.1: SigLIP + Redux; FLUX.2 reads images through its VAE); --tiny:
    SigLIP and Redux are the suite's in-memory stand-ins."""
    from vmdiff_cli import tiny_models

    steps = {"vae": lambda: call("VAELoader", vae_name=names[f"{family} VAE"])[0]}
    if family == "flux1":
        steps["clip_vision"] = (lambda: tiny_models.tiny_clip_vision(0)) if tiny else \
            (lambda: call("CLIPVisionLoader", clip_name=names["SigLIP"])[0])
        steps["style_model"] = (lambda: tiny_models.tiny_style_model(0)) if tiny else \
            (lambda: call("StyleModelLoader", style_model_name=names["Redux"])[0])
    return _load_all(steps, {"clip_vision", "style_model"} if tiny else set(), timings, f"{family} ")


def _load_all(steps: dict, in_memory: set, timings: dict, prefix: str = "") -> dict:
    loaded = {}
    for name, step in steps.items():
        log(f"load {prefix}{name}")
        start = time.perf_counter()
        loaded[name] = step()
        how = " (in-memory stand-in)" if name in in_memory else ""
        timings[f"load {prefix}{name}{how}"] = time.perf_counter() - start
    return loaded


def load_unet(family: str, names: dict, weight_dtype: str, tiny: bool, timings: dict):
    start = time.perf_counter()
    told = [flux_config(f, True) for f in ("flux1", "flux2")] if tiny else []
    with detector_told(told):
        model = call("UNETLoader", unet_name=names[f"{family} DiT"], weight_dtype=weight_dtype)[0]
    timings[f"load {family} DiT ({weight_dtype})"] = time.perf_counter() - start
    return model


class DitMeter:
    """Counts and times every DiT pass (ComfyUI's model_function_wrapper hook) and records the most ComfyUI's model
    management had loaded / offloaded (LoadedModel.model_loaded_memory / model_offloaded_memory) during them."""

    def __init__(self, model, device: str):
        self.model = model.clone()
        self.model.set_model_unet_function_wrapper(self)
        self.device = device
        self.reset()

    def reset(self):
        self.calls, self.seconds, self.loaded, self.offloaded = 0, 0.0, 0, 0

    def __call__(self, apply_model, args):
        import comfy.model_management as mm

        loaded = sum(m.model_loaded_memory() for m in mm.current_loaded_models)
        offloaded = sum(m.model_offloaded_memory() for m in mm.current_loaded_models)
        self.loaded, self.offloaded = max(self.loaded, loaded), max(self.offloaded, offloaded)
        _sync(self.device)
        start = time.perf_counter()
        out = apply_model(args["input"], args["timestep"], **args["c"])
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


_T0 = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(f"[bench_gpu {time.perf_counter() - _T0:7.1f} s, peak RSS {peak_rss_mib():5.0f} MiB] {message}",
          file=sys.stderr, flush=True)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: Linux's VmHWM (/proc/self/status), the high-water mark of this
    program's own memory. Not getrusage's ru_maxrss, which keeps the peak of the process that forked this one
    (kept across exec: a benchmark started by a large test process would report that process's size); elsewhere
    ru_maxrss (KiB on Linux, bytes on macOS: read as KiB)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Row:
    family: str
    dtype: str
    size: int
    cap: str
    stage: str
    seconds: float = float("nan")
    passes: int = 0
    dit_seconds: float = 0.0
    peak_alloc: float = float("nan")
    peak_reserved: float = float("nan")
    loaded: float = 0.0
    offloaded: float = 0.0
    fits: str = "yes"
    note: str = ""
    extra: dict = field(default_factory=dict)


@contextmanager
def measured(row: Row, meter: DitMeter, device: str):
    """Time a stage; per-stage peak VRAM (torch.cuda.max_memory_allocated/reserved reset before it); an
    out-of-memory error under a cap is recorded as fits = no."""
    import comfy.model_management as mm

    log(f"{row.family} {row.dtype} {row.size}² cap {row.cap}: {row.stage}")
    gc.collect()
    meter.reset()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield
        _sync(device)
    except Exception as e:  # noqa: BLE001 - only out-of-memory is a result; anything else is a failure
        if not isinstance(e, torch.cuda.OutOfMemoryError):
            raise
        row.fits, row.note = "no", "out of memory"
        mm.soft_empty_cache(True)
    row.seconds = time.perf_counter() - start
    row.passes, row.dit_seconds = meter.calls, meter.seconds
    row.loaded, row.offloaded = meter.loaded / GB, meter.offloaded / GB
    if device == "cuda":
        row.peak_alloc = torch.cuda.max_memory_allocated() / GB
        row.peak_reserved = torch.cuda.max_memory_reserved() / GB
    if row.fits == "yes" and row.offloaded > 0:
        row.fits = "offloads"


# --------------------------------------------------------------------------------------------------
# 3. the stages

def workflow_widgets(name: str, class_type: str) -> dict:
    """The unlinked inputs of ``class_type`` in workflows/api/<name>.json (the shipped settings)."""
    api = json.loads((REPO_ROOT / "workflows" / "api" / f"{name}.json").read_text())
    node = next(v for v in api.values() if v["class_type"] == class_type)
    return {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}


def stage_widgets(family: str, size: int, steps: int, t_den_step: int) -> tuple[dict, dict]:
    """Blending Noise's and Mixing Denoise's widgets of the family's shipped workflow at this size and step count."""
    name = "vmdiff_manual_scored" if family == "flux1" else KLEIN_WORKFLOW
    bn = dict(workflow_widgets(name, "VMDiffBlendingNoise"), width=size, height=size, steps=steps,
              t_den_step=t_den_step)
    md = dict(workflow_widgets(name, "VMDiffMixingDenoise"), steps=steps)
    return bn, md


def run_baseline(family: str, ctx: dict, m, size: int, steps: int) -> None:
    """FLUX.1: workflows/core_two_redux.json (its DualCLIPLoader → CLIPTextEncode replaced by the CLIP-L fusion prompt
    zero-padded to the DiT's context, as tests/server/test_server_baselines.py does). FLUX.2: the core two-reference
    sampling of workflows/vmdiff_flux2.json (VAEEncode + ReferenceLatent ×2, BasicGuider, euler on
    Flux2Scheduler's σ, SamplerCustomAdvanced), on the same widened text."""
    images, vae = ctx["images"], ctx["vae"]
    if family == "flux1":
        cond = text = ctx["text"]
        for image in images:
            cv = call("CLIPVisionEncode", clip_vision=ctx["clip_vision"], image=image, crop="none")[0]
            cond = call("StyleModelApply", conditioning=cond, style_model=ctx["style_model"], clip_vision_output=cv,
                        strength=1.0, strength_type="multiply")[0]
        cond = call("FluxGuidance", conditioning=cond,
                    guidance=workflow_widgets("core_two_redux", "FluxGuidance")["guidance"])[0]
        neg = call("ConditioningZeroOut", conditioning=text)[0]
        latent = call("EmptySD3LatentImage", width=size, height=size, batch_size=1)[0]
        ks = dict(workflow_widgets("core_two_redux", "KSampler"), steps=steps)
        latent = call("KSampler", model=m, positive=cond, negative=neg, latent_image=latent, **ks)[0]
    else:
        cond = ctx["conditioning"]
        for image in images:
            cond = call("ReferenceLatent", conditioning=cond, latent=call("VAEEncode", pixels=image, vae=vae)[0])[0]
        guider = call("BasicGuider", model=m, conditioning=cond)[0]
        sigmas = call("Flux2Scheduler", steps=steps, width=size, height=size)[0]
        latent = call("SamplerCustomAdvanced", noise=call("RandomNoise", noise_seed=42)[0], guider=guider,
                      sampler=call("KSamplerSelect", sampler_name="euler")[0], sigmas=sigmas,
                      latent_image=call("EmptyFlux2LatentImage", width=size, height=size, batch_size=1)[0])[0]
    call("VAEDecode", samples=latent, vae=vae)


def run_stages(family: str, ctx: dict, model, size: int, steps: int, t_den_step: int, device: str,
               label: dict) -> list[Row]:
    from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
    from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
    from vmdiff_pack.nodes.similarity_score import VMDiffSimilarityScore

    meter = DitMeter(model, device)
    m = meter.model
    rows = {s: Row(stage=s, size=size, **label) for s in STAGES}
    rows["Baseline"].note = BASELINES[family]
    refs = (ctx["tokens_1"], ctx["tokens_2"], ctx["conditioning"])
    with measured(rows["Baseline"], meter, device):
        run_baseline(family, ctx, m, size, steps)
    bn, md = stage_widgets(family, size, steps, t_den_step)
    eps_b = None
    with measured(rows["Blending Noise"], meter, device):
        eps_b = VMDiffBlendingNoise.execute(m, *refs, **bn).result[0]
    if eps_b is None:  # Blending Noise ran out of memory: nothing to mix
        for stage in STAGES[2:]:
            rows[stage].fits, rows[stage].note = "no", "not run: no ε_b"
        return list(rows.values())
    with measured(rows["Mixing Denoise"], meter, device):
        VMDiffMixingDenoise.execute(m, eps_b, *refs, **md)
    # One Auto-Tune candidate: a Mixing Denoise from the shared ε_b at the next α, decoded and scored (what the
    # search repeats per candidate; its ε_b is reused across the α stage).
    with measured(rows["Auto-Tune candidate"], meter, device):
        latent = VMDiffMixingDenoise.execute(m, eps_b, *refs, **dict(md, alpha=0.45)).result[0]
        image = call("VAEDecode", samples=latent, vae=ctx["vae"])[0]
        rows["Auto-Tune candidate"].extra["score"] = VMDiffSimilarityScore.execute(ctx["scorer"], image).result[0]
    return list(rows.values())


def setup_inputs(family: str, shared: dict, loaded: dict, size: int, context_dim: int) -> dict:
    """The two object images (their content is irrelevant to the cost), the family's encodings of them (FLUX.1:
    Redux tokens; FLUX.2: reference latents through its VAE), the fusion prompt P (CLIP-L; for FLUX.2 widened to its
    text width without a pooled vector, vmdiff_cli/tiny_flux2.flux2_text_conditioning: no Qwen3 here) and the scorer."""
    from vmdiff_cli.tiny_flux2 import flux2_text_conditioning

    from vmdiff_pack.nodes.prompt import VMDiffFusionPrompt
    from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
    from vmdiff_pack.nodes.reference_encode import VMDiffReferenceEncode
    from vmdiff_pack.nodes.similarity_score import VMDiffScorer

    log(f"{family}: encode the objects, fusion prompt, scorer")
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(1, size, size, 3, generator=gen) for _ in LABELS]
    ctx = dict(shared, **loaded, images=images)
    text = VMDiffFusionPrompt.execute(shared["clip"], *LABELS).result[0]
    if family == "flux1":
        ctx["tokens_1"], ctx["tokens_2"] = (VMDiffReduxEncode.execute(loaded["clip_vision"], loaded["style_model"],
                                                                      i).result[0] for i in images)
        ctx["conditioning"] = text
        ctx["text"] = [[torch.nn.functional.pad(t, (0, context_dim - t.shape[-1])), dict(o)] for t, o in text]
    else:
        ctx["tokens_1"], ctx["tokens_2"] = (VMDiffReferenceEncode.execute(loaded["vae"], i).result[0] for i in images)
        ctx["conditioning"] = flux2_text_conditioning(text, context_dim)
    scorer_widgets = workflow_widgets("vmdiff_manual_scored", "VMDiffScorer")
    if shared.get("tiny"):  # the stand-in GroundingDINO at 224 px, as the server tests (800 px on a CPU costs 4x
        scorer_widgets["detect_size"] = 224  # more; its Swin needs more than 64 px)
    ctx["scorer"] = VMDiffScorer.execute(shared["dino"], shared["open_clip"], images[0], images[1], *LABELS,
                                         grounding_dino=shared["grounding_dino"], **scorer_widgets).result[0]
    return ctx


@contextmanager
def memory_cap(cap_gb: float | None, device: str):
    """Emulate a card of ``cap_gb``: ComfyUI's reserve (what --reserve-vram sets) = total − cap, so its loader plans
    for that card, and a per-process fraction, so that exceeding it is an out-of-memory error. Unloads all models
    before and after (each cap starts cold, as on that card)."""
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache(True)
    if cap_gb is None or device != "cuda":
        yield
        return
    total = torch.cuda.get_device_properties(0).total_memory
    saved = mm.EXTRA_RESERVED_VRAM
    mm.EXTRA_RESERVED_VRAM = saved + max(0, total - int(cap_gb * GB))
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * GB / total))
    try:
        yield
    finally:
        mm.EXTRA_RESERVED_VRAM = saved
        torch.cuda.set_per_process_memory_fraction(1.0)
        mm.unload_all_models()
        mm.soft_empty_cache(True)


# --------------------------------------------------------------------------------------------------
# 4. the table

TABLE_HEADER = ("| model | weights | size | cap | stage | DiT passes | s/pass | stage s | × baseline | peak alloc GB | "
                "peak reserved GB | loaded GB | offloaded GB | fits |")


def table(rows: list[Row], device_name: str) -> str:
    base = {(r.family, r.dtype, r.size, r.cap): r for r in rows if r.stage == STAGES[0]}
    lines = [f"Device: {device_name}. s/pass = DiT forward seconds / DiT passes; peak VRAM per stage "
             "(torch.cuda.max_memory_allocated / reserved, reset per stage); offloaded = most weight ComfyUI kept off "
             "the device during the stage (LoadedModel.model_offloaded_memory). Baseline: FLUX.1, the core two-Redux "
             "KSampler graph; FLUX.2, core two-reference sampling.", "", TABLE_HEADER,
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get((r.family, r.dtype, r.size, r.cap))
        ratio = r.seconds / b.seconds if b and b.seconds and b.fits != "no" and r.fits != "no" else float("nan")
        per = r.dit_seconds / r.passes if r.passes else float("nan")
        lines.append(f"| {r.family} | {r.dtype} | {r.size}² | {r.cap} | {r.stage} | {r.passes} | {per:.3f} | "
                     f"{r.seconds:.2f} | {ratio:.2f} | {r.peak_alloc:.2f} | {r.peak_reserved:.2f} | {r.loaded:.2f} | "
                     f"{r.offloaded:.2f} | {r.fits}{' (' + r.note + ')' if r.note else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the test suite's stand-in shapes (hidden-64 DiTs), for "
                                                            "the CPU smoke test")
    parser.add_argument("--quick", action="store_true", help="512², bf16 and FLUX.1 only, uncapped")
    parser.add_argument("--families", nargs="+", default=None, choices=("flux1", "flux2"),
                        help="FLUX.1 [dev] + Redux and/or FLUX.2 [klein] 4B + references (default both; --quick: "
                             "flux1; flux2 is skipped with a KLEIN: line where the running ComfyUI cannot load it)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="image sides (default 512 1024; "
                                                                           "--tiny: 64)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: FLUX.1 20 as its workflows, FLUX.2 [klein] 4 as "
                             "workflows/vmdiff_flux2.json; --tiny: 4)")
    parser.add_argument("--t-den-step", type=int, default=None, help="default steps // 2")
    parser.add_argument("--caps", type=float, nargs="*", default=None,
                        help="emulated card sizes in GB after the uncapped run, at the largest size (default 24 16; "
                             "none on the CPU)")
    parser.add_argument("--weights", nargs="+", default=None, choices=("default", "fp8_e4m3fn"),
                        help="UNETLoader weight_dtype (default: default fp8_e4m3fn; --quick: default)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the random-weight files (default: a "
                                                               "temporary folder, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep --out's files for a second run")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here; use --device cpu --tiny for the smoke test")
    if args.device == "cpu" and not args.tiny:
        parser.error("--device cpu runs the stand-in shapes only: add --tiny (12 B parameters on a CPU take hours)")
    if args.keep and args.out is None:
        parser.error("--keep needs --out DIR (the default folder is temporary)")
    sizes = args.sizes or ([64] if args.tiny else [512] if args.quick else [512, 1024])
    if args.quick:
        sizes = sizes[:1]
    weights = args.weights or (["default"] if args.quick else ["default", "fp8_e4m3fn"])
    caps = [None] + (list(args.caps) if args.caps is not None else ([] if args.quick else [24.0, 16.0]))
    if args.device == "cpu":
        caps = [None]
    families = args.families or (["flux1"] if args.quick else ["flux1", "flux2"])

    timings, t_all = {}, time.perf_counter()
    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="vmdiff_bench_")
        out = Path(tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    boot(args.device, out)
    timings["boot ComfyUI + pack"] = time.perf_counter() - start
    import comfy.model_management as mm

    notes = []
    why = klein_support() if "flux2" in families else None
    if why:
        verdict = "this run used the FLUX.2 stand-in instead" if args.tiny else "skipped"
        notes.append(f"KLEIN: FLUX.2 [klein] 4B at real shapes: {verdict}. ComfyUI {_comfy_version()} cannot load it: "
                     f"{why} (cores from about 0.9.2 derive it from the width).")
        if not args.tiny:
            families = [f for f in families if f != "flux2"]
    names = prepare_models(out, families, args.tiny, args.device, timings)
    shared = dict(load_shared(names, args.tiny, timings), tiny=args.tiny)
    print(f"models in {out}: " + ", ".join(f"{k}={v}" for k, v in sorted(names.items())), flush=True)

    rows, schedule = [], {}
    for family in families:
        steps = args.steps or (4 if args.tiny or family == "flux2" else 20)  # t_den_step must be <= steps - 2
        t_den_step = args.t_den_step if args.t_den_step is not None else steps // 2
        schedule[family] = (steps, t_den_step)
        loaded = load_family(family, names, args.tiny, timings)
        start = time.perf_counter()
        ctx = setup_inputs(family, shared, loaded, max(sizes), flux_config(family, args.tiny)["context_in_dim"])
        timings[f"{family}: encode objects, fusion prompt, scorer sources"] = time.perf_counter() - start
        # --tiny: FLUX.2 in bf16 only (the fp8 cast is the same UNETLoader path, smoke-tested on FLUX.1)
        for weight_dtype in (["default"] if args.tiny and family == "flux2" and args.weights is None else weights):
            model = load_unet(family, names, weight_dtype, args.tiny, timings)
            for cap in caps:
                with memory_cap(cap, args.device):
                    for size in (sizes if cap is None else sizes[-1:]):  # caps: the largest size only (budget)
                        start = time.perf_counter()
                        label = dict(family=FAMILY_LABELS[family, args.tiny],
                                     dtype="bf16" if weight_dtype == "default" else weight_dtype,
                                     cap="none" if cap is None else f"{cap:g} GB")
                        rows += run_stages(family, ctx, model, size, steps, t_den_step, args.device, label)
                        part = f"stages {family} {label['dtype']} {size}² cap {label['cap']}"
                        timings[part] = time.perf_counter() - start
                        print(f"done {part} in {timings[part]:.1f} s", flush=True)
            del model
            mm.unload_all_models()
            gc.collect()
        del ctx, loaded
        mm.unload_all_models()
        gc.collect()
    timings["total"] = time.perf_counter() - t_all

    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (stand-in shapes)"
    print("\n## Time per part\n")
    print("| part | s |\n|---|---|")
    for part, seconds in timings.items():
        print(f"| {part} | {seconds:.1f} |")
    print(f"\nPeak host memory (RSS): {peak_rss_mib():.0f} MiB")
    print("\n## Stages (" + "; ".join(f"{FAMILY_LABELS[f, args.tiny]}: {s} steps, t_den step {t}"
                                      for f, (s, t) in schedule.items()) + ")\n")
    print(table(rows, device_name))
    for note in notes:
        print(f"\n{note}")
    if tmp is not None and not args.keep:
        tmp.cleanup()
    return 0


def _comfy_version() -> str:
    from vmdiff_cli import tiny_models

    return tiny_models._comfyui_version()


if __name__ == "__main__":
    sys.exit(main())
