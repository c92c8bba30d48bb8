"""Device benchmark at real size: seconds per DiT pass, seconds and peak VRAM per stage, under ComfyUI's own model
management, for VMDiff's stages beside the core two-Redux KSampler graph, in one command.

    python -m benchmarks.bench_gpu                       # CUDA, real shapes, 512² and 1024², bf16 + fp8, caps
    python -m benchmarks.bench_gpu --quick               # CUDA, 512² bf16 only
    python -m benchmarks.bench_gpu --device cpu --tiny   # the CPU smoke test (tests/server/test_bench_gpu.py)

Real weights are not needed: time per pass and memory depend on the shapes and on ComfyUI's loading, casting and
offloading, not on the values. So the script (1) writes random-weight files of the real shapes (FLUX.1 [dev] 12 B
DiT, SigLIP so400m + Redux, the Flux VAE, CLIP-L, and the scorers DINOv2-base, OpenCLIP ViT-bigG-14,
grounding-dino-tiny), filling each tensor on the device and streaming it into a safetensors file; (2) loads them
through ComfyUI's loader nodes (UNETLoader with weight_dtype default / fp8_e4m3fn, CLIPLoader, CLIPVisionLoader,
StyleModelLoader, VAELoader) and the pack's scorer loaders; (3) runs, in-process under comfy.model_management,
Blending Noise, Mixing Denoise, one Auto-Tune candidate (Mixing Denoise at the search steps + VAE Decode + the
Similarity Score) and the core two-Redux graph of workflows/core_two_redux.json (its T5 replaced by CLIP-L, as the
tests do) as the baseline; (4) repeats under memory caps emulating 24 GB and 16 GB cards: ComfyUI's reserve
(``--reserve-vram``'s variable, comfy.model_management.EXTRA_RESERVED_VRAM, set to total − cap) so that its loader
offloads as on that card, plus torch.cuda.set_per_process_memory_fraction(cap / total) so that going over the cap is
an out-of-memory error, reported as "no" in the table's "fits" column.

It prints how long each part took and one markdown table. See docs/gpu_benchmark.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
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
STAGES = ("Baseline core_two_redux", "Blending Noise", "Mixing Denoise", "Auto-Tune candidate")

# FLUX.1 [dev] as released (ComfyUI detects it from these shapes): 19 double + 38 single blocks, 11.9 B parameters.
FLUX1_DEV_DEPTH = dict(depth=19, depth_single_blocks=38)
# The Flux VAE (ae.safetensors): comfy.ldm.modules.diffusionmodules.model Encoder/Decoder, 16 latent channels.
FLUX_VAE_DDCONFIG = dict(double_z=True, z_channels=16, resolution=256, in_channels=3, out_ch=3, ch=128,
                         ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)
# FLUX.2 [klein] 4B: not loadable by ComfyUI 0.8.0 (its Flux2 model class and Qwen3 text encoder arrived in ~0.9.2).
# When the reference-image work (w18a/w18b) has landed and ComfyUI is >= 0.9.2, add a "flux2_klein_4b" entry to
# MODEL_FAMILIES below (its DiT factory, text encoder and VAE files) and it is picked up by --families.
MODEL_FAMILIES = {"flux1_dev": "FLUX.1 [dev] + Redux (ComfyUI 0.8.0)"}
KLEIN_MIN_COMFYUI = "0.9.2"


# --------------------------------------------------------------------------------------------------
# 1. random-weight files of the real shapes

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


_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float8_e4m3fn: "F8_E4M3"}


@torch.no_grad()
def write_module_file(model: torch.nn.Module, path: Path, dtype: torch.dtype, device: str, seed: int = 0,
                      constants: dict | None = None, prefix: str = "") -> dict:
    """Stream random weights for every parameter of ``model`` (built on the meta device) into the safetensors file
    ``path``: each tensor is filled on ``device`` (torch.empty + normal_, never a CPU randn of 12 B values), copied
    to the host and appended, so host memory holds one tensor at a time. Keys are ``prefix + name``.

    Raises ValueError naming any persistent buffer (the loaders would leave it uninitialised). Returns
    {"params", "bytes", "seconds"}."""
    start = time.perf_counter()
    constants = constants or {}
    entries = []
    for mname, module in model.named_modules():
        for pname, p in module._parameters.items():
            if p is not None:
                entries.append((f"{mname}.{pname}" if mname else pname, module, pname, tuple(p.shape)))
    params = {e[0] for e in entries}
    buffers = [k for k in model.state_dict() if k not in params]
    if buffers:
        raise ValueError(f"{path.name}: persistent buffers without values {buffers[:5]}")
    item = torch.empty((), dtype=dtype).element_size()
    header, offset = {"__metadata__": {"vmdiff_bench": f"random weights of the real shapes, seed {seed}"}}, 0
    for key, _, _, shape in entries:
        size = math.prod(shape) * item
        header[prefix + key] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape),
                                "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    gen = torch.Generator(device=device).manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for key, module, pname, shape in entries:
            t = _random_tensor(module, pname, shape, dtype, device, gen, constants, key)
            f.write(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    os.replace(tmp, path)
    return {"params": sum(math.prod(e[3]) for e in entries), "bytes": path.stat().st_size,
            "seconds": time.perf_counter() - start}


def _flux_vae():
    import comfy.ldm.modules.diffusionmodules.model as vae_model

    vae = torch.nn.Module()
    vae.encoder = vae_model.Encoder(**FLUX_VAE_DDCONFIG)
    vae.decoder = vae_model.Decoder(**FLUX_VAE_DDCONFIG)
    return vae


def model_recipes(tiny: bool) -> dict:
    """{folder kind: (file name, meta-module factory, dtype)} of the files written by write_module_file.

    Real: vmdiff_cli/tiny_models' real-loader recipes at full size (FLUX.1 [dev]'s 19 + 38 blocks, SigLIP so400m, Redux,
    CLIP-L) and the Flux VAE. Tiny (--tiny): the project's real-loader stand-in Flux (FLUX.1's width, one double
    block) and the TAESD-layout 16-channel VAE; the other files are the project's cached stand-ins."""
    import comfy.ldm.flux.model
    import comfy.ops
    from vmdiff_cli import tiny_models

    recipes = tiny_models._real_loader_recipes()
    depth = {} if tiny else FLUX1_DEV_DEPTH
    out = {"diffusion_models": ("vmdiff-bench-flux1-dev.safetensors", lambda: comfy.ldm.flux.model.Flux(
        operations=comfy.ops.disable_weight_init, **dict(tiny_models.REAL_FLUX_CONFIG, **depth)), torch.bfloat16)}
    if tiny:
        out["vae"] = ("vmdiff-bench-ae.safetensors", recipes["vae"], torch.float16)
    else:
        out["vae"] = ("vmdiff-bench-ae.safetensors", _flux_vae, torch.bfloat16)
        out["clip_vision"] = ("vmdiff-bench-siglip-so400m.safetensors", recipes["clip_vision"], torch.float16)
        out["style_models"] = ("vmdiff-bench-redux.safetensors", recipes["style_models"], torch.bfloat16)
        out["text_encoders"] = ("vmdiff-bench-clip_l.safetensors", recipes["text_encoders"], torch.float16)
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


def prepare_models(out: Path, tiny: bool, device: str, timings: dict) -> dict:
    """Write every file (or link the cached stand-ins) under ``out/<kind>/``; returns the loader widget values."""
    from vmdiff_cli import tiny_models

    names = {}
    for kind, (name, factory, dtype) in model_recipes(tiny).items():
        start = time.perf_counter()
        with torch.device("meta"):
            module = factory()
        log(f"write {kind}")
        info = write_module_file(module, out / kind / name, dtype, device)
        names[kind] = name
        timings[f"write {kind} ({info['params'] / 1e9:.2f} B params, {info['bytes'] / GB:.2f} GB)"] = \
            time.perf_counter() - start
    start = time.perf_counter()
    if tiny:
        from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES, ensure_tiny_scorers

        cache = tiny_models.default_tiny_models_dir()
        tiny_models.write_real_loader_models(cache)  # ComfyUI is up: in-process (reuses the cached files)
        ensure_tiny_scorers(cache)
        for kind in ("clip_vision", "style_models", "text_encoders"):
            names[kind] = tiny_models.REAL_LOADER_FILES[kind]
            _link(cache / kind / names[kind], out / kind / names[kind])
        for folder in ("dinov2", "open_clip", "grounding-dino"):
            _link(cache / folder, out / folder)
        names.update(dinov2=TINY_SCORER_NAMES["dinov2"], open_clip_model=TINY_SCORER_NAMES["open_clip_model"],
                     open_clip=TINY_SCORER_NAMES["open_clip"], grounding_dino=TINY_SCORER_NAMES["grounding_dino_hf"])
        timings["stand-in CLIP-L, SigLIP, Redux, scorers (project cache)"] = time.perf_counter() - start
    else:
        names.update(write_real_scorers(out, device))
        timings["write scorers (DINOv2-base, ViT-bigG-14, grounding-dino-tiny)"] = time.perf_counter() - start
    return names


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        return
    dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())


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


def load_models(names: dict, timings: dict) -> dict:
    """Every model through ComfyUI's and the pack's loader nodes (not yet on the device: ComfyUI loads on use)."""
    import nodes

    from vmdiff_pack.nodes.score_loaders import VMDiffLoadDINOv2, VMDiffLoadGroundingDINO, VMDiffLoadOpenCLIP

    loaded = {}
    steps = {
        "clip": lambda: call("CLIPLoader", clip_name=names["text_encoders"], type="stable_diffusion")[0],
        "clip_vision": lambda: call("CLIPVisionLoader", clip_name=names["clip_vision"])[0],
        "style_model": lambda: call("StyleModelLoader", style_model_name=names["style_models"])[0],
        "vae": lambda: call("VAELoader", vae_name=names["vae"])[0],
        "dino": lambda: VMDiffLoadDINOv2.execute(names["dinov2"]).result[0],
        "open_clip": lambda: VMDiffLoadOpenCLIP.execute(names["open_clip_model"], names["open_clip"]).result[0],
        "grounding_dino": lambda: VMDiffLoadGroundingDINO.execute(names["grounding_dino"],
                                                                  _builtin_gdino_config()).result[0],
    }
    assert "UNETLoader" in nodes.NODE_CLASS_MAPPINGS
    for name, step in steps.items():
        log(f"load {name}")
        start = time.perf_counter()
        loaded[name] = step()
        timings[f"load {name}"] = time.perf_counter() - start
    return loaded


def _builtin_gdino_config() -> str:
    from vmdiff_pack.vmdiff_comfy.scoring import detection

    return detection.BUILTIN_GDINO_CONFIG


def load_unet(names: dict, weight_dtype: str, timings: dict):
    start = time.perf_counter()
    model = call("UNETLoader", unet_name=names["diffusion_models"], weight_dtype=weight_dtype)[0]
    timings[f"load diffusion model ({weight_dtype})"] = time.perf_counter() - start
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
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench_gpu {time.perf_counter() - _T0:7.1f} s] {message}", file=sys.stderr, flush=True)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


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

    log(f"{row.dtype} {row.size}² cap {row.cap}: {row.stage}")
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


def run_stages(ctx: dict, model, size: int, steps: int, t_den_step: int, device: str, label: dict) -> list[Row]:
    from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
    from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
    from vmdiff_pack.nodes.prompt import VMDiffFusionPrompt
    from vmdiff_pack.nodes.similarity_score import VMDiffSimilarityScore

    meter = DitMeter(model, device)
    m = meter.model
    rows = {s: Row(stage=s, size=size, **label) for s in STAGES}
    images = ctx["images"]

    # Baseline: workflows/core_two_redux.json (DualCLIPLoader → CLIPTextEncode replaced by the CLIP-L fusion
    # prompt, as tests/test_server_baselines.py does).
    ks = dict(workflow_widgets("core_two_redux", "KSampler"), steps=steps)
    with measured(rows["Baseline core_two_redux"], meter, device):
        # No T5-XXL: the CLIP-L fusion prompt zero-padded to Flux's 4096 (as tests/test_server_baselines.py).
        text = [[torch.nn.functional.pad(t, (0, 4096 - t.shape[-1])), dict(o)]  # zero-padded to Flux's 4096
                for t, o in VMDiffFusionPrompt.execute(ctx["clip"], *LABELS).result[0]]
        cond = text
        for image in images:
            cv = call("CLIPVisionEncode", clip_vision=ctx["clip_vision"], image=image, crop="none")[0]
            cond = call("StyleModelApply", conditioning=cond, style_model=ctx["style_model"], clip_vision_output=cv,
                        strength=1.0, strength_type="multiply")[0]
        cond = call("FluxGuidance", conditioning=cond, guidance=workflow_widgets("core_two_redux", "FluxGuidance")
                    ["guidance"])[0]
        neg = call("ConditioningZeroOut", conditioning=text)[0]
        latent = call("EmptySD3LatentImage", width=size, height=size, batch_size=1)[0]
        latent = call("KSampler", model=m, positive=cond, negative=neg, latent_image=latent, **ks)[0]
        call("VAEDecode", samples=latent, vae=ctx["vae"])

    bn = dict(workflow_widgets("vmdiff_manual_scored", "VMDiffBlendingNoise"), width=size, height=size, steps=steps,
              t_den_step=t_den_step)
    md = dict(workflow_widgets("vmdiff_manual_scored", "VMDiffMixingDenoise"), steps=steps)
    eps_b = None
    with measured(rows["Blending Noise"], meter, device):
        eps_b = VMDiffBlendingNoise.execute(m, ctx["tokens_1"], ctx["tokens_2"], ctx["conditioning"], **bn).result[0]
    if eps_b is None:  # Blending Noise ran out of memory: nothing to mix
        for stage in STAGES[2:]:
            rows[stage].fits, rows[stage].note = "no", "not run: no ε_b"
        return list(rows.values())
    with measured(rows["Mixing Denoise"], meter, device):
        VMDiffMixingDenoise.execute(m, eps_b, ctx["tokens_1"], ctx["tokens_2"], ctx["conditioning"], **md)
    # One Auto-Tune candidate: a Mixing Denoise from the shared ε_b at the next α, decoded and scored (what the
    # search repeats per candidate; its ε_b is reused across the α stage).
    with measured(rows["Auto-Tune candidate"], meter, device):
        latent = VMDiffMixingDenoise.execute(m, eps_b, ctx["tokens_1"], ctx["tokens_2"], ctx["conditioning"],
                                             **dict(md, alpha=0.45)).result[0]
        image = call("VAEDecode", samples=latent, vae=ctx["vae"])[0]
        score = VMDiffSimilarityScore.execute(ctx["scorer"], image).result[0]
        rows["Auto-Tune candidate"].extra["score"] = score
    return list(rows.values())


def setup_inputs(loaded: dict, size: int, tiny: bool) -> dict:
    """Redux tokens of two object images, the fusion prompt P and the scorer (once; the images' content is
    irrelevant to the cost)."""
    from vmdiff_pack.nodes.prompt import VMDiffFusionPrompt
    from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
    from vmdiff_pack.nodes.similarity_score import VMDiffScorer

    log("Redux tokens, fusion prompt, scorer")
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(1, size, size, 3, generator=gen) for _ in LABELS]
    ctx = dict(loaded, images=images)
    ctx["tokens_1"], ctx["tokens_2"] = (VMDiffReduxEncode.execute(loaded["clip_vision"], loaded["style_model"], i)
                                        .result[0] for i in images)
    ctx["conditioning"] = VMDiffFusionPrompt.execute(loaded["clip"], *LABELS).result[0]
    scorer_widgets = workflow_widgets("vmdiff_manual_scored", "VMDiffScorer")
    if tiny:  # the stand-in GroundingDINO at 224 px, as the server tests (800 px on a CPU costs 4x more; its Swin
        scorer_widgets["detect_size"] = 224  # needs more than 64 px)
    ctx["scorer"] = VMDiffScorer.execute(loaded["dino"], loaded["open_clip"], images[0], images[1], *LABELS,
                                         grounding_dino=loaded["grounding_dino"], **scorer_widgets).result[0]
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

def table(rows: list[Row], device_name: str) -> str:
    base = {(r.family, r.dtype, r.size, r.cap): r for r in rows if r.stage == STAGES[0]}
    lines = [f"Device: {device_name}. s/pass = DiT forward seconds / DiT passes; peak VRAM per stage "
             "(torch.cuda.max_memory_allocated / reserved, reset per stage); offloaded = most weight ComfyUI kept off "
             "the device during the stage (LoadedModel.model_offloaded_memory).", "",
             "| model | weights | size | cap | stage | DiT passes | s/pass | stage s | × baseline | peak alloc GB | "
             "peak reserved GB | loaded GB | offloaded GB | fits |",
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
    parser.add_argument("--tiny", action="store_true", help="stand-in shapes (FLUX.1 width, one block) for the CPU "
                                                            "smoke test")
    parser.add_argument("--quick", action="store_true", help="512² and bf16 only")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="image sides (default 512 1024; "
                                                                           "--tiny: 64)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 20 as the workflows; "
                                                                "--tiny: 4)")
    parser.add_argument("--t-den-step", type=int, default=None, help="default steps // 2")
    parser.add_argument("--caps", type=float, nargs="*", default=None,
                        help="emulated card sizes in GB after the uncapped run, at the largest size (default 24 16; "
                             "none "
                             "on the CPU)")
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
    steps = args.steps or (4 if args.tiny else 20)  # Blending Noise needs t_den_step <= steps - 2
    t_den_step = args.t_den_step if args.t_den_step is not None else steps // 2
    weights = args.weights or (["default"] if args.quick else ["default", "fp8_e4m3fn"])
    caps = [None] + (list(args.caps) if args.caps is not None else ([] if args.device == "cpu" or args.quick
                                                                      else [24.0, 16.0]))
    if args.device == "cpu":
        caps = [None]

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

    names = prepare_models(out, args.tiny, args.device, timings)
    loaded = load_models(names, timings)
    start = time.perf_counter()
    ctx = setup_inputs(loaded, max(sizes), args.tiny)
    timings["Redux tokens, fusion prompt, scorer sources"] = time.perf_counter() - start
    print(f"models in {out}: " + ", ".join(f"{k}={v}" for k, v in sorted(names.items())), flush=True)

    rows = []
    for weight_dtype in weights:
        model = load_unet(names, weight_dtype, timings)
        for cap in caps:
            with memory_cap(cap, args.device):
                for size in (sizes if cap is None else sizes[-1:]):  # caps: the largest size only (budget)
                    start = time.perf_counter()
                    label = dict(family="FLUX.1 [dev]" if not args.tiny else "FLUX.1 stand-in",
                                 dtype="bf16" if weight_dtype == "default" else weight_dtype,
                                 cap="none" if cap is None else f"{cap:g} GB")
                    rows += run_stages(ctx, model, size, steps, t_den_step, args.device, label)
                    timings[f"stages {label['dtype']} {size}² cap {label['cap']}"] = time.perf_counter() - start
                    print(f"done {label['dtype']} {size}² cap {label['cap']} in "
                          f"{time.perf_counter() - start:.1f} s", flush=True)
        del model
        mm.unload_all_models()
        gc.collect()
    timings["total"] = time.perf_counter() - t_all

    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (stand-in shapes)"
    print("\n## Time per part\n")
    print("| part | s |\n|---|---|")
    for part, seconds in timings.items():
        print(f"| {part} | {seconds:.1f} |")
    print(f"\n## Stages ({steps} steps, t_den step {t_den_step})\n")
    print(table(rows, device_name))
    print(f"\nKLEIN: FLUX.2 [klein] 4B is not in this run: ComfyUI {_comfy_version()} has no FLUX.2 "
          f"loader (needs >= {KLEIN_MIN_COMFYUI}); see MODEL_FAMILIES in benchmarks/bench_gpu.py.")
    if tmp is not None and not args.keep:
        tmp.cleanup()
    return 0


def _comfy_version() -> str:
    from vmdiff_cli import tiny_models

    return tiny_models._comfyui_version()


if __name__ == "__main__":
    sys.exit(main())
