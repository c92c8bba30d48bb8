"""VMDiff MagicMix: semantic mixing (Liew et al.) of a layout (image or prompt) with a content condition, on any
model ComfyUI samples (ε-prediction SD1.5/SDXL, rectified-flow Flux), through the pack's one Euler integrator."""
from __future__ import annotations

import math

import torch

import comfy.ldm.modules.diffusionmodules.openaimodel
import comfy.sample
import comfy.samplers
from comfy_api.latest import io, ui

from ..vmdiff_ops import NFECounter
from ..vmdiff_ops.magicmix import layout_noises, layout_trajectory, magicmix, mixing_window
from .blending_noise import initial_noise
from .common import (ReduxTokensType, VMDiffInputError, check_is_tokens, flux_model_info, phase_conditioning,
                     run_flow_program, widget_problems)

#: Flux's guidance when the conditioning carries none (ComfyUI's model_base.Flux default)
FLUX_DEFAULT_GUIDANCE = 3.5

REWEIGHT_TOOLTIP = (
    "Token positions of the content prompt whose cross-attention is scaled by reweight_scale, comma-separated "
    "(0 is CLIP's start token, 1 the first word; common words are one token). SD1.x/SD2/SDXL UNets: the value "
    "vectors of those tokens are multiplied by s in every cross-attention layer (attn2 patch, conditional pass "
    "only); since to_v has no bias this is exactly the paper's scaling of the token's attention column by s "
    "(s < 0 removes the concept). Not supported on joint-attention models such as Flux (text and image tokens "
    "attend jointly through biased projections, so there is no per-token attention column to scale): the node "
    "refuses a token list there.")


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


def content_conditioning(model, content, content_tokens):
    """The content condition: the prompt as given, or on Flux the Redux tokens of a second image with the prompt's
    pooled vector and Flux guidance (set it with FluxGuidance; 3.5 when absent), as VMDiff conditions."""
    if content_tokens is None:
        return content
    check_is_tokens("content_tokens", content_tokens)
    try:
        info = flux_model_info(model)
    except VMDiffInputError as exc:
        raise VMDiffInputError(f"content_tokens: Redux tokens condition Flux only. {exc}") from None
    if info["context_dim"] is not None and content_tokens.tokens.shape[-1] != info["context_dim"]:
        raise VMDiffInputError(f"content_tokens: tokens are {content_tokens.tokens.shape[-1]} wide, the model's "
                               f"context expects {info['context_dim']}")
    guidance = content[0][1].get("guidance", FLUX_DEFAULT_GUIDANCE) if content else FLUX_DEFAULT_GUIDANCE
    return phase_conditioning(content, content_tokens.tokens, guidance, "redux_only", info["vec_dim"])


def run_magicmix(model, content, seed: int, steps: int = 20, scheduler: str = "simple", k_max: float = 0.6,
                 k_min: float = 0.3, nu: float = 0.5, cfg: float = 1.0, layout_image=None, vae=None,
                 layout_conditioning=None, content_tokens=None, negative=None, width: int = 512, height: int = 512,
                 reweight_tokens: str = "", reweight_scale: float = 1.0, on_step=None) -> dict:
    """MagicMix on ``model``: returns the VAE-space "latent", "nfe" (velocity calls), "x_kmin" (the model-space
    state x̂ at K_min), the grid "sigmas" and the window indices "i_max", "i_min"."""
    if (layout_image is None) == (layout_conditioning is None):
        raise VMDiffInputError("layout_image / layout_conditioning: connect exactly one layout — an image (with its "
                               "VAE) for image–text mixing, or a layout prompt for text–text mixing")
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

    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).float().cpu()
    noise_scaling = model_noise_scaling(model)
    phases = {"content": content_conditioning(model, content, content_tokens)}
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
    seen = {}

    def program(velocity_for, x, step_hook):
        def hook(i, x_in, sigma, v, x_out):
            if i == offset + i_min - i_max:  # the first step below K_min starts from x̂_{K_min}
                seen["x_kmin"] = x_in
            step_hook(i, x_in, sigma, v, x_out)
            if on_step is not None:
                on_step(i, x_in, sigma, v, x_out)

        if layout_conditioning is None:
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
        return {"x": out, "x_kmin": seen["x_kmin"]}

    out = run_flow_program(model, phases, x_start, program, sigmas, total, seed, negative=negative, cfg=cfg)
    out.update(nfe=counter.calls, sigmas=sigmas, i_max=i_max, i_min=i_min)
    return out


class VMDiffMagicMix(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffMagicMix",
            display_name="VMDiff MagicMix",
            category="VMDiff",
            description="MagicMix (Liew et al.), VMDiff's ancestor: mixes the layout of an image (or of a layout "
                        "prompt) with the content of a prompt or, on Flux, of a second image's Redux tokens. From "
                        "K_max to K_min each denoising step under the content is blended with the layout noise, "
                        "x̂ = ν·x̂' + (1 − ν)·x_k; below K_min it denoises plainly. Runs on any model ComfyUI "
                        "samples (SD1.5/SDXL ε-prediction, Flux flow matching), Euler on the model's own schedule.",
            inputs=[
                io.Model.Input("model", tooltip="Any image model: SD1.5/SDXL checkpoint, Flux dev/Krea, …"),
                io.Conditioning.Input("content", tooltip="The content prompt (e.g. 'coffee machine'). With "
                                                         "content_tokens on Flux only its pooled vector and Flux "
                                                         "guidance are used."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the one noise draw ε (the same draw KSampler makes)."),
                io.Int.Input("steps", default=20, min=1, max=1000, tooltip="T, steps of the whole σ grid."),
                io.Combo.Input("scheduler", options=list(comfy.samplers.SCHEDULER_NAMES), default="simple",
                               tooltip="The σ grid from the model's own model_sampling (ComfyUI calculate_sigmas)."),
                io.Float.Input("k_max", default=0.6, min=0.0, max=1.0, step=0.01,
                               tooltip="K_max as a fraction of T: where generation starts from the noised layout."),
                io.Float.Input("k_min", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="K_min as a fraction of T: the layout phase ends here (k_min = k_max: plain "
                                       "img2img from K_max)."),
                io.Float.Input("nu", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="ν, the mixing constant: 1 follows the content only, 0 keeps the layout "
                                       "noise path down to K_min."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Classifier-free guidance for ε-prediction models (e.g. 7.5 on SD1.5, needs "
                                       "negative); keep 1 on Flux (guidance-distilled: use FluxGuidance)."),
                io.Int.Input("width", default=512, min=8, max=16384, step=8,
                             tooltip="Output width for text–text mixing (an image layout sets its own size)."),
                io.Int.Input("height", default=512, min=8, max=16384, step=8,
                             tooltip="Output height for text–text mixing."),
                io.Float.Input("reweight_scale", default=1.0, min=-2.0, max=2.0, step=0.05,
                               tooltip="s, the attention re-weighting factor of reweight_tokens (1 = off). "
                                       + REWEIGHT_TOOLTIP),
                io.String.Input("reweight_tokens", default="", tooltip=REWEIGHT_TOOLTIP),
                io.Image.Input("layout_image", optional=True, tooltip="Image–text mixing: the layout image."),
                io.Vae.Input("vae", optional=True, tooltip="Encodes layout_image."),
                io.Conditioning.Input("layout_conditioning", optional=True,
                                      tooltip="Text–text mixing: the layout prompt (instead of an image)."),
                ReduxTokensType.Input("content_tokens", optional=True,
                                      tooltip="Flux: Redux tokens of a content image (VMDiff Redux Encode), the "
                                              "same input VMDiff mixes."),
                io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt, used when cfg ≠ 1."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, k_max, k_min):
        problems = widget_problems({"k_max": (0.0, 1.0), "k_min": (0.0, 1.0)}, k_max=k_max, k_min=k_min)
        if not problems and None not in (k_max, k_min) and k_min > k_max:
            problems.append(f"k_min {k_min} must not exceed k_max {k_max}")
        return "; ".join(problems) or True

    @classmethod
    def execute(cls, model, content, seed, steps=20, scheduler="simple", k_max=0.6, k_min=0.3, nu=0.5, cfg=1.0,
                width=512, height=512, reweight_scale=1.0, reweight_tokens="", layout_image=None, vae=None,
                layout_conditioning=None, content_tokens=None, negative=None) -> io.NodeOutput:
        out = run_magicmix(model, content, seed, steps, scheduler, k_max, k_min, nu, cfg, layout_image, vae,
                           layout_conditioning, content_tokens, negative, width, height, reweight_tokens,
                           reweight_scale)
        i_max, i_min, sigmas = out["i_max"], out["i_min"], out["sigmas"]
        layout = "image" if layout_image is not None else f"prompt ({i_min} layout-prompt steps first)"
        guided = negative is not None and not math.isclose(cfg, 1.0)
        text = (f"MagicMix, layout from {layout}: K_max = {steps - i_max} (σ = {float(sigmas[i_max]):.4f}), "
                f"K_min = {steps - i_min} (σ = {float(sigmas[i_min]):.4f}) of T = {steps}; {i_min - i_max} layout "
                f"steps with ν = {nu:g}, {steps - i_min} content steps; {out['nfe']} model calls"
                + (f" × 2 (cfg {cfg:g})" if guided else ""))
        return io.NodeOutput({"samples": out["latent"]}, ui=ui.PreviewText(text))
