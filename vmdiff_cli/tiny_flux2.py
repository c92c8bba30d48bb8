"""Tiny random-weight FLUX.2 stand-ins built from ComfyUI 0.8.0's own classes, like vmdiff_cli/tiny_models.py
does for FLUX.1.

FLUX.2 cannot come from a file here: ComfyUI 0.8.0's detector (comfy/model_detection.py, the ``flux2`` branch) fixes
48 heads and 4 × 32 rotary axes, so hidden = 6144, and a file its loader accepts holds at least one double block at
that width (``flux2_loader_file_size`` measures it: see tests/nodes/test_flux2_standin.py). So:

- ``tiny_flux2``: a real ``comfy.model_base.Flux2`` (supported_models ``Flux2``: ModelSamplingFlux + CONST, the
  128-channel ``latent_formats.Flux2``) around ``comfy.ldm.flux.model.Flux`` with ``image_model`` flux2: patch 1,
  global modulation, SiLU-gated MLP, no biases, text position ids on axis 3, references placed by ``index`` (scale 10)
  — every FLUX.2 switch of the detector, only narrower (hidden 64, 2 heads, 1 + 1 blocks). ``variant`` "klein" has no
  guidance embedding (FLUX.2 [klein], distilled or base); "dev" has one (FLUX.2 [dev], guidance-distilled).
- ``tiny_flux2_vae``: a ``comfy.sd.VAE`` that ComfyUI builds as FLUX.2's VAE (32-channel AutoencoderKL whose latent is
  patchified 2×2 and batch-normalised: 128 channels at 1/16 of the image). ComfyUI fixes that VAE's widths
  (ch 128, ch_mult 1-2-4-4), so it is full size (84 M parameters, built in memory in about a second); only its
  weights are random (running mean 0, variance 1).
- ``flux2_text_conditioning``: FLUX.2's text conditioning (tokens only, no pooled vector) from any text CONDITIONING:
  the tokens zero-padded to the model's context width, ``pooled_output`` None (real: 15360 = 3 × 5120 stacked
  Mistral-Small-3.1 layers for
  [dev] in 0.8.0; 7680 = 3 × 2560 Qwen3-4B layers for [klein] 4B in later cores). The stand-ins have no Mistral or
  Qwen3 (0.8.0's Mistral tokenizer needs the ``tekken`` data inside the real file), so the tests encode the prompt
  with the tiny CLIP-L (a real tokenizer and encoder) and widen it with this.

Weights: vmdiff_cli/tiny_models' deterministic rule (biases 0, norm scales 1, weights randn/sqrt(fan_in)).
"""
from __future__ import annotations

import math
import sys

import torch

try:
    from vmdiff_cli.tiny_models import _fill_, _random_tensors, ensure_comfy
except ImportError:  # loaded by path inside a ComfyUI server (tests/custom_nodes/vmdiff_test_nodes), which loads
    # vmdiff_cli/tiny_models.py first under this name (the repository is not on the server's sys.path)
    _tiny = sys.modules["vmdiff_test_tiny_models"]
    _fill_, _random_tensors, ensure_comfy = _tiny._fill_, _tiny._random_tensors, _tiny.ensure_comfy

#: ComfyUI 0.8.0's FLUX.2 switches (comfy/model_detection.py) at a tiny width: 2 heads × (4 axes × 8) = 64.
TINY_FLUX2_CONFIG = dict(
    image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=96, hidden_size=64,
    num_heads=2, axes_dim=[8, 8, 8, 8], mlp_ratio=3.0, depth=1, depth_single_blocks=1, theta=2000, patch_size=1,
    qkv_bias=False, guidance_embed=False, txt_ids_dims=[3], global_modulation=True, mlp_silu_act=True,
    ops_bias=False, default_ref_method="index", ref_index_scale=10.0,
)

#: The smallest FLUX.2 file ComfyUI 0.8.0's UNETLoader detects: its forced width (48 heads × 128), one double block,
#: no single block, a 64-wide text input and no guidance embedding.
REAL_FLUX2_LOADER_CONFIG = dict(TINY_FLUX2_CONFIG, hidden_size=6144, num_heads=48, axes_dim=[32, 32, 32, 32],
                                context_in_dim=64, depth=1, depth_single_blocks=0)

FLUX2_VARIANTS = ("klein", "dev")


def tiny_flux2(seed: int = 0, variant: str = "klein", context_dim: int = 96):
    """Replaces FLUX.2 [klein] / [dev] (``UNETLoader``'s MODEL): a ModelPatcher of ``comfy.model_base.Flux2``
    (supported_models ``Flux2``) with hidden 64 / 2 heads / 1 + 1 blocks, 128 latent channels, patch 1, ``index``
    references. ``variant``: "klein" (no guidance embedding) or "dev" (guidance embedding). Raises ValueError on an
    unknown variant."""
    if variant not in FLUX2_VARIANTS:
        raise ValueError(f"variant: expected one of {FLUX2_VARIANTS}, got {variant!r}")
    ensure_comfy()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    config = dict(TINY_FLUX2_CONFIG, context_in_dim=context_dim, guidance_embed=variant == "dev")
    model_config = comfy.supported_models.Flux2(config)
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    _fill_(model.diffusion_model, seed, f"tiny_flux2_{variant}")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


#: FLUX.2's VAE as ComfyUI 0.8.0 builds it (comfy/sd.py, the default AutoencoderKL branch with ``bn.running_mean``).
FLUX2_VAE_DDCONFIG = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                      "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
                      "batch_norm_latent": True}


def flux2_vae_state_dict(seed: int = 0, dtype=torch.float32) -> dict:
    """A state dict of FLUX.2's VAE layout (random weights; batch-norm running mean 0, variance 1)."""
    ensure_comfy()
    from comfy.ldm.models.autoencoder import AutoencoderKL

    with torch.device("meta"):
        shapes = AutoencoderKL(ddconfig=dict(FLUX2_VAE_DDCONFIG), embed_dim=32)
    sd = dict(_random_tensors(shapes, seed, "tiny_flux2_vae", dtype))
    channels = 4 * FLUX2_VAE_DDCONFIG["z_channels"]
    sd["bn.running_mean"] = torch.zeros(channels, dtype=dtype)
    sd["bn.running_var"] = torch.ones(channels, dtype=dtype)
    sd["bn.num_batches_tracked"] = torch.tensor(0)
    return sd


def tiny_flux2_vae(seed: int = 0):
    """Replaces FLUX.2's VAE (``VAELoader``'s VAE): ``comfy.sd.VAE`` detected from a FLUX.2-layout state dict, so
    ComfyUI itself sets 128 latent channels and a 16× down/up-scale."""
    ensure_comfy()
    import comfy.sd

    return comfy.sd.VAE(sd=flux2_vae_state_dict(seed))


def flux2_text_conditioning(conditioning, width: int) -> list:
    """FLUX.2's text CONDITIONING from a text CONDITIONING: each token set zero-padded to ``width`` wide; no pooled
    vector (``pooled_output`` None, as FLUX.2's own encoder leaves it: ComfyUI's Flux reads the key), every other key
    kept. Raises ValueError if the tokens are
    wider than ``width``."""
    out = []
    for tokens, extras in conditioning:
        if tokens.shape[-1] > width:
            raise ValueError(f"conditioning: tokens are {tokens.shape[-1]} wide, more than the width {width}")
        padded = torch.nn.functional.pad(tokens, (0, width - tokens.shape[-1]))
        out.append([padded, dict(extras, pooled_output=None)])  # as FLUX.2's own text encoder gives it
    return out


def flux2_loader_file_size(config: dict | None = None, bytes_per_param: int = 2) -> dict:
    """Parameters and bytes (fp16/bf16) of the smallest file ComfyUI 0.8.0 loads as FLUX.2, counted on the meta
    device from ComfyUI's own Flux class; also the keys/shapes as meta tensors, for the detector."""
    ensure_comfy()
    import comfy.ldm.flux.model
    import comfy.ops

    config = dict(config or REAL_FLUX2_LOADER_CONFIG)
    with torch.device("meta"):
        model = comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, **config)
    shapes = {k: v for k, v in model.state_dict().items()}
    params = sum(math.prod(v.shape) for v in shapes.values())
    return {"params": params, "bytes": params * bytes_per_param, "meta_state_dict": shapes}
