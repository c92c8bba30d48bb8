"""The Mixing Denoise stage (MDeNoise): ε_b → full denoise under SInp = mix(z1, z2, α) → the fused latent."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...vmdiff_ops import NFECounter, flow_sigma_grid, flux_mu, mix_tokens, mixing_denoise, official_mix_tokens
from ..errors import VMDiffInputError
from .checks import check_token_pair, flux_model_info
from .families import latent_scale_for_model, sigma_grid_for_model
from .flow import ProgramOutput, phase_conditioning, run_flow_program
from .parity import bf16_parity
from .reference import (check_reference_pair, is_reference, reference_bias_options, reference_conditioning,
                        sinp_references)
from .regional import AlphaMap, regional_conditioning, token_grid
from .settings import StageSettings, ops_errors, problems, raise_problems


@dataclass
class MixingResult:
    """The fused VAE latent (one batch element per α), the sample-NFE, and for one α under the official rule the
    share of tokens that took its slerp branch."""

    latent: torch.Tensor
    nfe: int
    slerp_fraction: float | None = None
    sampling_patched: bool = False
    block_alphas: list[float] | None = None  # with an α map: the α of each context block


def run_mixing_denoise(model, eps_b, tokens_1, tokens_2, conditioning, *, settings: StageSettings, alpha=0.5,
                       seed: int = 0, callback=None, alpha_map: AlphaMap | None = None,
                       node: str | None = "VMDiff Mixing Denoise", on_pass=None) -> MixingResult:
    """The fused latent from the noise-space tensor ε_b. ``alpha`` may also be a list: one batch element per α
    (ε_b of batch 1 is shared, or one ε_b per α). ``tokens_2`` None: tokens_1 is already SInp (VMDiff Mix Tokens
    N); α and mix_rule do not apply. ``alpha_map``: a spatial α (``alpha`` where its mask is 0; stages.regional).
    ``node``: named when the model returns NaN / inf (None: not checked, the caller scores it as the worst).
    ``on_pass``: see ``flow.run_flow_program``."""
    info = flux_model_info(model)
    references = is_reference(tokens_1) or is_reference(tokens_2)
    if references:  # a reference-latent model (FLUX.1 Kontext, FLUX.2): α balances the references' attention
        check_reference_pair(tokens_1, tokens_2, model)
    else:
        check_token_pair(tokens_1, tokens_2, info)
    s = settings
    raise_problems(problems(steps=s.steps, guidance=s.guidance, mix_rule=s.mix_rule, context=s.context))
    alphas = list(alpha) if isinstance(alpha, (list, tuple)) else [alpha]
    if len(alphas) > 1 and eps_b.shape[0] not in (1, len(alphas)):
        raise VMDiffInputError(f"eps_b: a batch of {eps_b.shape[0]} for {len(alphas)} α values")
    if eps_b.shape[1] != info.latent_channels:
        raise VMDiffInputError(f"eps_b: has {eps_b.shape[1]} channels, the model's latent has "
                               f"{info.latent_channels}")
    eps_b = eps_b.repeat(len(alphas), 1, 1, 1) if eps_b.shape[0] == 1 < len(alphas) else eps_b
    parity = bf16_parity(s.bf16_state)
    eps_b = parity.state(eps_b)  # the reference keeps ε_b in bf16 (a no-op on Blending Noise's bf16 ε_b)
    options = None
    if references:
        if alpha_map is not None:
            raise VMDiffInputError("mask: a spatial α is not available with reference images yet; disconnect the "
                                   "mask (or use Redux token sets)")
        latents, bias = sinp_references(tokens_1, tokens_2, alphas)
        options, _ = reference_bias_options(model, latents, bias)
        phases = {"mix": reference_conditioning(conditioning, latents, parity.guidance(s.guidance), model)}
    else:
        with ops_errors():
            sinp = tokens_1.tokens if tokens_2 is None else torch.cat(
                [mix_tokens(tokens_1.tokens, tokens_2.tokens, a, s.mix_rule) for a in alphas])
        phases = {"mix": phase_conditioning(conditioning, sinp, parity.guidance(s.guidance), s.context,
                                            info.vec_dim)}
    block_alphas = None
    if alpha_map is not None:
        if tokens_2 is None or len(alphas) > 1:
            raise VMDiffInputError("mask: a spatial α needs tokens_2 and a single alpha; connect both token sets "
                                   "(or disconnect the mask)")
        with ops_errors():
            phases["mix"], block_alphas = regional_conditioning(
                lambda a: phase_conditioning(conditioning, mix_tokens(tokens_1.tokens, tokens_2.tokens, a, s.mix_rule),
                                             parity.guidance(s.guidance), s.context, info.vec_dim),
                alphas[0], alpha_map, token_grid(eps_b.shape, model.model.diffusion_model.patch_size))
    if references:  # the σ grid core samples that model family on (FLUX.2: Flux2Scheduler's)
        scale = latent_scale_for_model(model)
        sigmas = sigma_grid_for_model(model, s.steps, eps_b.shape[3] * scale, eps_b.shape[2] * scale)
    else:
        height, width = eps_b.shape[2] * 8, eps_b.shape[3] * 8
        sigmas = flow_sigma_grid(s.steps, flux_mu(width, height))
    counter = NFECounter()

    def program(velocity_for, x, on_step):
        return ProgramOutput(mixing_denoise(x, sigmas, parity.velocity(velocity_for("mix")), counter=counter,
                                            on_step=on_step, state_dtype=parity.state_dtype))

    with ops_errors():
        run = run_flow_program(model, phases, eps_b, program, sigmas, s.steps, seed, callback, node=node,
                               on_pass=on_pass, transformer_options=options)
    fraction = None
    if s.mix_rule == "official" and tokens_2 is not None and len(alphas) == 1 and not references:
        fraction = official_mix_tokens(tokens_1.tokens, tokens_2.tokens, alphas[0])[1]
    return MixingResult(latent=run.latent, nfe=counter.samples, slerp_fraction=fraction,
                        sampling_patched=info.sampling_patched, block_alphas=block_alphas)
