"""The Blending Noise stage (BNoise): ε → guided denoise to t_den under SCat(β1·z1, β2·z2) → inversion to σ = 1."""
from __future__ import annotations

from dataclasses import dataclass

import torch

import comfy.sample

from ...vmdiff_ops import NFECounter, blending_noise, flow_sigma_grid, flux_mu, scale_concat
from .checks import check_size, check_token_pair, flux_model_info
from .families import latent_scale_for_model, sigma_grid_for_model
from .flow import ProgramOutput, phase_conditioning, run_flow_program
from .parity import bf16_parity
from .reference import (check_reference_pair, is_reference, reference_bias_options, reference_conditioning,
                        scat_references)
from .settings import StageSettings, ops_errors, raise_problems


@dataclass
class BlendingResult:
    """ε_b (model space, one batch element per (β1, β2)), the clean-image estimate at t_den (model space), the σ grid
    and the sample-NFE."""

    eps_b: torch.Tensor
    preview: torch.Tensor
    sigmas: torch.Tensor
    nfe: int
    sampling_patched: bool = False


def initial_noise(seed: int, channels: int, width: int, height: int, downscale: int = 8) -> torch.Tensor:
    """ε: ComfyUI's seeded noise (float32 CPU randn), the same values the reference draws before bf16 rounding.
    ``downscale``: pixels per latent cell (8; FLUX.2: 16, families.latent_scale_for_model)."""
    return comfy.sample.prepare_noise(torch.zeros(1, channels, height // downscale, width // downscale), seed)


def run_blending_noise(model, tokens_1, tokens_2, conditioning, *, seed: int, width: int, height: int,
                       settings: StageSettings, beta_1=1.0, beta_2=1.0, callback=None,
                       node: str | None = "VMDiff Blending Noise", on_pass=None) -> BlendingResult:
    """ε_b for one (β1, β2, seed). β1 and β2 may also be equal-length lists: one batch element per (β1, β2) pair,
    all from the same ε. ``tokens_2`` None: tokens_1 is already a concatenation (VMDiff Mix Tokens N's concat).
    ``node``: named when the model returns NaN / inf (None: not checked, the caller scores it as the worst).
    ``on_pass``: see ``flow.run_flow_program``."""
    info = flux_model_info(model)
    references = is_reference(tokens_1) or is_reference(tokens_2)
    if references:  # a reference-latent model (FLUX.1 Kontext, FLUX.2): β weighs the references' attention
        check_reference_pair(tokens_1, tokens_2, model)
    else:
        check_token_pair(tokens_1, tokens_2, info)
    check_size(width, height)
    raise_problems(settings.problems())
    s = settings
    betas = list(zip(*(v if isinstance(v, (list, tuple)) else [v] for v in (beta_1, beta_2)), strict=True))
    parity = bf16_parity(s.bf16_state)
    options = None
    if references:
        latents, bias = scat_references(tokens_1, tokens_2, betas)
        options, _ = reference_bias_options(model, latents, bias)
        phases = {phase: reference_conditioning(conditioning, latents, parity.guidance(guidance), model)
                  for phase, guidance in (("denoise", s.guidance_denoise), ("invert", s.guidance_invert))}
    else:
        phases = _redux_phases(conditioning, tokens_1, tokens_2, betas, parity, s, info)
    if references:  # the σ grid core samples that model family on (FLUX.2: Flux2Scheduler's)
        sigmas, scale = sigma_grid_for_model(model, s.steps, width, height), latent_scale_for_model(model)
    else:
        sigmas, scale = flow_sigma_grid(s.steps, flux_mu(width, height)), 8
    counter = NFECounter()
    preview = {}

    def program(velocity_for, eps, on_step):
        def hook(i, x_in, sigma, v, x_out):
            if i == s.t_den_step:  # the clean-image estimate at t_den under SCat: what ε_b encodes
                preview["x0"] = x_in - sigma * v
            on_step(i, x_in, sigma, v, x_out)

        eps_b, _ = blending_noise(eps, sigmas, s.t_den_step, parity.velocity(velocity_for("denoise")),
                                  parity.velocity(velocity_for("invert")), inversion=s.inversion, counter=counter,
                                  on_step=hook, state_dtype=parity.state_dtype)
        return ProgramOutput(eps_b, {"preview": preview["x0"]})

    eps = initial_noise(seed, info.latent_channels, width, height, scale).expand(len(betas), -1, -1, -1).clone()
    eps = parity.state(eps)
    with ops_errors():
        run = run_flow_program(model, phases, eps, program, sigmas, 2 * (s.t_den_step + 1), seed, callback,
                               node=node, on_pass=on_pass, transformer_options=options)
    return BlendingResult(eps_b=run.x, preview=run.extras["preview"], sigmas=sigmas, nfe=counter.samples,
                          sampling_patched=info.sampling_patched)


def _redux_phases(conditioning, tokens_1, tokens_2, betas, parity, s: StageSettings, info) -> dict:
    """The two phases' conditionings on FLUX.1 + Redux: SCat(β1·z1, β2·z2) as the context."""
    with ops_errors():
        if tokens_2 is None:  # tokens_1 is already a concatenation (VMDiff Mix Tokens N's concat), scaled by β1
            if not all(b1 > 0 for b1, _ in betas):
                raise ValueError(f"beta_1 must be > 0 (it scales a token set), got {[b1 for b1, _ in betas]}")
            scat = torch.cat([tokens_1.tokens * b1 for b1, _ in betas])
        else:
            scat = torch.cat([scale_concat(tokens_1.tokens, tokens_2.tokens, b1, b2) for b1, b2 in betas])
    return {
        "denoise": phase_conditioning(conditioning, scat, parity.guidance(s.guidance_denoise), s.context,
                                      info.vec_dim),
        "invert": phase_conditioning(conditioning, scat, parity.guidance(s.guidance_invert), s.context, info.vec_dim),
    }

