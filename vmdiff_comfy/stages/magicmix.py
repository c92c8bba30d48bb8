"""The MagicMix stage: semantic mixing (Liew et al.) of a layout (image or prompt) with a content condition, on any
model ComfyUI samples (ε-prediction SD1.5/SDXL, rectified-flow Flux), through the pack's one Euler integrator."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import comfy.ldm.modules.diffusionmodules.openaimodel
import comfy.sample
import comfy.samplers

from ...vmdiff_ops import NFECounter
from ...vmdiff_ops.magicmix import layout_noises, layout_trajectory, magicmix, mixing_window
from ..errors import VMDiffInputError
from .blending_noise import initial_noise
from .checks import check_conditioning, check_is_tokens, flux_model_info, image_input
from .flow import ProgramOutput, phase_conditioning, run_flow_program
from .settings import MAGICMIX


@dataclass
class MagicMixResult:
    """The VAE-space latent, the model calls (velocity evaluations), the model-space state x̂ at K_min, the σ grid
    and the window's grid indices."""

    latent: torch.Tensor
    nfe: int
    x_kmin: torch.Tensor
    sigmas: torch.Tensor
    i_max: int
    i_min: int


#: Flux's guidance when the conditioning carries none (ComfyUI's model_base.Flux default)
FLUX_DEFAULT_GUIDANCE = 3.5

def model_noise_scaling(model):
    """The model family's own x_σ = noise_scaling(σ, ε, x0) (ComfyUI's model_sampling), with ComfyUI's
    max_denoise rule at σ_max (ε-prediction scales pure noise by √(1 + σ²)), as KSampler applies it."""
    sampling = model.get_model_object("model_sampling")
    sigma_max = float(sampling.sigma_max)

    def scale(sigma: float, eps: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        max_denoise = math.isclose(sigma_max, sigma, rel_tol=1e-05) or sigma > sigma_max
        return sampling.noise_scaling(torch.tensor(sigma, dtype=torch.float32), eps, x0, max_denoise)
    return scale


def parse_token_positions(text: str) -> list[int]:
    try:
        positions = sorted({int(p) for p in text.replace(" ", "").split(",") if p})
    except ValueError:
        raise VMDiffInputError(f"reweight_tokens: {text!r} is not a comma-separated list of token positions "
                               f"(e.g. '2, 5')") from None
    if any(p < 0 for p in positions):
        raise VMDiffInputError(f"reweight_tokens: positions must be ≥ 0, got {text!r}")
    return positions


def reweight_patch(positions: list[int], scale: float, active: dict):
    """attn2 patch: multiplies the value input of the chosen context tokens by ``scale`` in the conditional
    chunks of the batch (ComfyUI's ``cond_or_uncond``: 0 = cond), while ``active["on"]``."""
    def patch(n, context_attn2, value_attn2, extra_options):
        if not active["on"]:
            return n, context_attn2, value_attn2
        kinds = extra_options.get("cond_or_uncond", [0])
        per_chunk = value_attn2.shape[0] // len(kinds)
        factor = torch.ones(value_attn2.shape[0], value_attn2.shape[1], 1, dtype=value_attn2.dtype,
                            device=value_attn2.device)
        for chunk, kind in enumerate(kinds):
            if kind == 0:
                factor[chunk * per_chunk:(chunk + 1) * per_chunk, positions] = scale
        return n, context_attn2, value_attn2 * factor
    return patch


def with_reweighting(model, content, reweight_tokens: str, reweight_scale: float, active: dict):
    """The model with the attention re-weighting patch, or the model itself when nothing is re-weighted."""
    positions = parse_token_positions(reweight_tokens)
    if not positions or reweight_scale == 1.0:
        return model
    if not isinstance(model.model.diffusion_model, comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel):
        raise VMDiffInputError(f"reweight_tokens: attention re-weighting needs a cross-attention UNet (SD1.x, SD2, "
                               f"SDXL); {type(model.model).__name__} attends jointly over text and image tokens, "
                               f"so it is not supported. Clear reweight_tokens.")
    length = content[0][0].shape[1]
    if positions[-1] >= length:
        raise VMDiffInputError(f"reweight_tokens: position {positions[-1]} is past the content prompt's "
                               f"{length} tokens")
    patched = model.clone()
    patched.set_model_attn2_patch(reweight_patch(positions, reweight_scale, active))
    return patched


CONTENT_TOKENS_FIX = "connect content_tokens (VMDiff Redux Encode of a content image; Flux only)"


def content_conditioning(model, content, content_tokens):
    """The content condition: the prompt as given, or on Flux the Redux tokens of a second image with the prompt's
    pooled vector and Flux guidance (set it with FluxGuidance; 3.5 when absent), as VMDiff conditions."""
    if content_tokens is None:
        check_conditioning("content", content, model, CONTENT_TOKENS_FIX)  # the tokens' hint: Flux only
        return content
    check_is_tokens("content_tokens", content_tokens)
    try:
        info = flux_model_info(model)
    except VMDiffInputError as exc:
        raise VMDiffInputError(f"content_tokens: Redux tokens condition Flux only. {exc}") from None
    if info.context_dim is not None and content_tokens.tokens.shape[-1] != info.context_dim:
        raise VMDiffInputError(f"content_tokens: tokens are {content_tokens.tokens.shape[-1]} wide, the model's "
                               f"context expects {info.context_dim}")
    guidance = content[0][1].get("guidance", FLUX_DEFAULT_GUIDANCE) if content else FLUX_DEFAULT_GUIDANCE
    return phase_conditioning(content, content_tokens.tokens, guidance, "redux_only", info.vec_dim, name="content",
                              honoured=("guidance",))


_D = {name: s.default for name, s in MAGICMIX.items()}


def check_magicmix_inputs(model, *, steps: int, scheduler: str, k_max: float, k_min: float, nu: float, cfg: float,
                          layout_image, vae, layout_conditioning, negative) -> tuple[int, int]:
    """The grid indices (i_max, i_min) of the mixing window [K_max, K_min]; raises VMDiffInputError naming the
    input for a missing or doubled layout, a layout image without its VAE, cfg ≠ 1 without a negative, an unknown
    scheduler, a bad window or ν ∉ [0, 1], and a conditioning of the wrong text encoder."""
    if (layout_image is None) == (layout_conditioning is None):
        raise VMDiffInputError("layout_image / layout_conditioning: connect exactly one layout — an image (with its "
                               "VAE) for image–text mixing, or a layout prompt for text–text mixing")
    if layout_image is not None:
        layout_image = image_input("layout_image", layout_image)
        if min(layout_image.shape[1:3]) < 16:  # the VAE's 8× latent of a 2×2-patch DiT: 16 px per image token
            raise VMDiffInputError(f"layout_image: the image is {layout_image.shape[2]}×{layout_image.shape[1]} "
                                   f"pixels; the layout is VAE-encoded, which needs at least 16 pixels a side: "
                                   f"resize or pad it (e.g. Upscale Image) first")
    if layout_image is not None and vae is None:
        raise VMDiffInputError("vae: needed to encode layout_image (use the VAE of the model)")
    if not math.isclose(cfg, 1.0) and negative is None:
        raise VMDiffInputError(f"negative: cfg {cfg:g} needs a negative conditioning (or set cfg to 1)")
    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise VMDiffInputError(f"scheduler: unknown {scheduler!r}; expected one of {comfy.samplers.SCHEDULER_NAMES}")
    try:
        i_max, i_min = mixing_window(steps, k_max, k_min)
    except ValueError as exc:
        raise VMDiffInputError(f"k_min / k_max: {exc}") from None
    if not 0.0 <= nu <= 1.0:
        raise VMDiffInputError(f"nu: must lie in [0, 1], got {nu}")
    for name, cond in (("layout_conditioning", layout_conditioning), ("negative", negative)):
        if cond is not None:
            check_conditioning(name, cond, model)
    return i_max, i_min


def magicmix_program(layout, sigmas, i_max: int, i_min: int, nu: float, counter: NFECounter, active: dict,
                     on_step=None):
    """The flow program of MagicMix (run by ``run_flow_program``): with ``layout`` the noised layout states
    x_{K_max}…x_{K_min} of an image (image–text), or None to make them first by denoising under the "layout" phase
    from σ_0 to K_min (text–text); then the mixing steps x̂ = ν·x̂' + (1 − ν)·x_k and the plain content steps
    below K_min. Its extra output is the model-space state x̂ at K_min."""
    seen = {}

    def program(velocity_for, x, step_hook):
        def hook(i, x_in, sigma, v, x_out):
            if i == offset + i_min - i_max:  # the first step below K_min starts from x̂_{K_min}
                seen["x_kmin"] = x_in
            step_hook(i, x_in, sigma, v, x_out)
            if on_step is not None:
                on_step(i, x_in, sigma, v, x_out)

        if layout is not None:
            offset, noises = 0, [t.to(x) for t in layout]
        else:
            offset = i_min
            layout_velocity = velocity_for("layout")

            def velocity_layout(x_, sigma):  # the re-weighting applies to the content prompt only
                active["on"] = False
                try:
                    return layout_velocity(x_, sigma)
                finally:
                    active["on"] = True
            noises = layout_trajectory(x, sigmas, i_max, i_min, velocity_layout, counter=counter, on_step=hook)
        out = magicmix(noises, sigmas, i_max, velocity_for("content"), nu, counter=counter, on_step=hook,
                       step_offset=offset)
        seen.setdefault("x_kmin", out)  # K_min = 0: no step below K_min
        return ProgramOutput(out, {"x_kmin": seen["x_kmin"]})

    return program


def run_magicmix(model, content, *, seed: int, steps: int = _D["steps"], scheduler: str = _D["scheduler"],
                 k_max: float = _D["k_max"], k_min: float = _D["k_min"], nu: float = _D["nu"], cfg: float = _D["cfg"],
                 layout_image=None, vae=None, layout_conditioning=None, content_tokens=None, negative=None,
                 width: int = _D["width"], height: int = _D["height"], reweight_tokens: str = _D["reweight_tokens"],
                 reweight_scale: float = _D["reweight_scale"], on_step=None) -> MagicMixResult:
    """MagicMix (Liew et al. 2022) on any model ComfyUI samples, Euler on the model's own σ grid of ``steps``
    (``scheduler``): the layout (``layout_image`` encoded by ``vae``, or ``layout_conditioning``) is noised to
    K_max = ``k_max``·T; from K_max to K_min = ``k_min``·T each step under ``content`` (a CONDITIONING; on Flux
    optionally ``content_tokens``, Redux tokens) is mixed with the layout's noised state, x̂ = ν·x̂' + (1 − ν)·x_k;
    below K_min it denoises plainly. ``negative`` and ``cfg``: classifier-free guidance (ε-prediction models).
    ``reweight_tokens`` / ``reweight_scale``: the paper's attention re-weighting of content tokens (UNets only).
    ``on_step(i, x_in, σ, v, x_out)``: called after every step. Returns a MagicMixResult (latent (B, C, H/8, W/8)
    in VAE space, model calls, x̂ at K_min, σ grid, window indices); raises VMDiffInputError naming a bad input."""
    i_max, i_min = check_magicmix_inputs(model, steps=steps, scheduler=scheduler, k_max=k_max, k_min=k_min, nu=nu,
                                         cfg=cfg, layout_image=layout_image, vae=vae,
                                         layout_conditioning=layout_conditioning, negative=negative)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).float().cpu()
    noise_scaling = model_noise_scaling(model)
    phases = {"content": content_conditioning(model, content, content_tokens)}
    layout = None
    if layout_image is not None:  # image–text: x_k = q(x_k | x0) of the encoded layout image, one noise draw
        latent = vae.encode(layout_image[..., :3])
        x0 = model.model.process_latent_in(latent)
        eps = comfy.sample.prepare_noise(latent, seed)  # the draw KSampler makes for this latent and seed
        layout = layout_noises(x0, eps, sigmas[i_max: i_min + 1], noise_scaling)
        x_start = layout[0]
        total = steps - i_max
    else:  # text–text: x_T = pure noise, denoised under the layout prompt to K_min
        eps = initial_noise(seed, model.model.latent_format.latent_channels, width, height)
        x_start = noise_scaling(float(sigmas[0]), eps, torch.zeros_like(eps))
        phases = {"layout": layout_conditioning, **phases}
        total = i_min + steps - i_max

    active = {"on": True}
    model = with_reweighting(model, phases["content"], reweight_tokens, reweight_scale, active)
    counter = NFECounter()
    program = magicmix_program(layout, sigmas, i_max, i_min, nu, counter, active, on_step)
    run = run_flow_program(model, phases, x_start, program, sigmas, total, seed, negative=negative, cfg=cfg,
                           node="VMDiff MagicMix")
    return MagicMixResult(latent=run.latent, nfe=counter.calls, x_kmin=run.extras["x_kmin"], sigmas=sigmas,
                          i_max=i_max, i_min=i_min)
