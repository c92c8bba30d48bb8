"""VMDiff Mixing Denoise (MDeNoise): ε_b → full denoise under SInp = mix(z1, z2, α) → the fused latent."""
from __future__ import annotations

import torch

from comfy_api.latest import io, ui

from ..vmdiff_ops import (MIX_RULES, NFECounter, flow_sigma_grid, flux_mu, mix_tokens, mixing_denoise,
                          official_mix_tokens)
from ..vmdiff_comfy.regional import regional_conditioning, token_grid
from ..vmdiff_ops.regional import IMAGE_ATTENTION
from .common import (CONTEXT_MODES, ReduxTokensType, VMDiffInputError, check_token_pair, flux_model_info,
                     noise_from_latent, phase_conditioning, run_flow_program)


def run_mixing_denoise(model, eps_b, tokens_1, tokens_2, conditioning, alpha=0.5, guidance=4.0, steps=20,
                       mix_rule="official", context="redux_only", seed=0, callback=None, bf16_state=False,
                       mask=None, alpha_masked=0.5, mask_levels=2, image_attention="whole_image") -> dict:
    """The fused latent for one α from the noise-space tensor ε_b; returns the VAE latent and the NFE count.
    ``alpha`` may also be a list: one batch element per α (ε_b of batch 1 is shared, or one ε_b per α).
    ``mask``: a spatial α (vmdiff_comfy.regional): ``alpha`` where it is 0, ``alpha_masked`` where it is 1."""
    info = flux_model_info(model)
    check_token_pair(tokens_1, tokens_2, info)
    alphas = list(alpha) if isinstance(alpha, (list, tuple)) else [alpha]
    for a in alphas:
        if not 0.0 <= a <= 1.0:
            raise VMDiffInputError(f"alpha: must lie in [0, 1] (the weight of image 2), got {a}")
    if len(alphas) > 1 and eps_b.shape[0] not in (1, len(alphas)):
        raise VMDiffInputError(f"eps_b: a batch of {eps_b.shape[0]} for {len(alphas)} α values")
    if mix_rule not in MIX_RULES:
        raise VMDiffInputError(f"mix_rule: unknown rule {mix_rule!r}; expected one of {MIX_RULES}")
    if eps_b.shape[1] != info["latent_channels"]:
        raise VMDiffInputError(f"eps_b: has {eps_b.shape[1]} channels, the model's latent has "
                               f"{info['latent_channels']}")
    # tokens_2 None: tokens_1 is already SInp (VMDiff Mix Tokens N), α and mix_rule do not apply
    sinp = tokens_1.tokens if tokens_2 is None else torch.cat([mix_tokens(tokens_1.tokens, tokens_2.tokens, a, mix_rule)
                                                                for a in alphas])
    eps_b = eps_b.repeat(len(alphas), 1, 1, 1) if eps_b.shape[0] == 1 < len(alphas) else eps_b
    phases = {"mix": phase_conditioning(conditioning, sinp, guidance, context, info["vec_dim"])}
    if mask is not None:
        if tokens_2 is None or len(alphas) > 1:
            raise VMDiffInputError("mask: a spatial α needs tokens_2 and a single alpha; connect both token sets "
                                   "(or disconnect the mask)")
        phases["mix"], block_alphas = regional_conditioning(
            lambda a: phase_conditioning(conditioning, mix_tokens(tokens_1.tokens, tokens_2.tokens, a, mix_rule),
                                         guidance, context, info["vec_dim"]),
            mask, alphas[0], alpha_masked, mask_levels, image_attention,
            token_grid(eps_b.shape, model.model.diffusion_model.patch_size))
    height, width = eps_b.shape[2] * 8, eps_b.shape[3] * 8
    sigmas = flow_sigma_grid(steps, flux_mu(width, height))
    counter = NFECounter()

    def program(velocity_for, x, on_step):
        return {"x": mixing_denoise(x, sigmas, velocity_for("mix"), counter=counter, on_step=on_step,
                                    state_dtype=torch.bfloat16 if bf16_state else None)}

    out = run_flow_program(model, phases, eps_b, program, sigmas, steps, seed, callback)
    out.update(nfe=counter.samples)
    if mask is not None:
        out["block_alphas"] = block_alphas
    if mix_rule == "official" and tokens_2 is not None and len(alphas) == 1:
        out["slerp_fraction"] = official_mix_tokens(tokens_1.tokens, tokens_2.tokens, alphas[0])[1]
    return out


class VMDiffMixingDenoise(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffMixingDenoise",
            display_name="VMDiff Mixing Denoise",
            category="VMDiff",
            description="MDeNoise: denoises the blended noise ε_b over the full schedule with the interpolated "
                        "tokens SInp = mix(z1, z2, α) (Flux guidance γ_gen) → the fused object's latent.",
            inputs=[
                io.Model.Input("model"),
                io.Latent.Input("eps_b", tooltip="ε_b from VMDiff Blending Noise."),
                ReduxTokensType.Input("tokens_1"),
                ReduxTokensType.Input("tokens_2", optional=True,
                                      tooltip="z2. Leave unconnected when tokens_1 is a ready mix from VMDiff Mix "
                                              "Tokens N (then α and mix_rule are not used)."),
                io.Conditioning.Input("conditioning"),
                io.Float.Input("alpha", default=0.5, min=0.0, max=1.0, step=0.001,
                               tooltip="α, the weight of image 2 in the token mix (0 = image 1 only)."),
                io.Float.Input("guidance", default=4.0, min=0.0, max=100.0, step=0.1, tooltip="γ_gen."),
                io.Int.Input("steps", default=20, min=1, max=200, tooltip="Denoising steps from σ = 1 to 0."),
                io.Combo.Input("mix_rule", options=list(MIX_RULES), default="official",
                               tooltip="official: the reference's per-token rule on raw tokens (≈ lerp); slerp: "
                                       "the paper's spherical mix of directions with norms interpolated; lerp."),
                io.Combo.Input("context", options=list(CONTEXT_MODES), default="redux_only"),
                io.Boolean.Input("bf16_state", default=False,
                                 tooltip="Parity with the reference code: round the latent to bf16 after every step."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Part-level fusion: a spatial α. alpha applies where the mask is 0, "
                                      "alpha_masked where it is 1 (e.g. the head of one object, the body of the "
                                      "other). Resized to the image-token grid."),
                io.Float.Input("alpha_masked", default=0.5, min=0.0, max=1.0, step=0.001,
                               tooltip="α where the mask is 1 (unused without a mask)."),
                io.Int.Input("mask_levels", default=2, min=2, max=8,
                             tooltip="K: a soft mask is quantised to K α levels between alpha and alpha_masked; "
                                     "each level in use adds one block of visual context tokens (cost)."),
                io.Combo.Input("image_attention", options=list(IMAGE_ATTENTION), default="whole_image",
                               tooltip="whole_image: image tokens attend to the whole image (regions blend at "
                                       "the border); own_region: only to their own region (exact isolation, a "
                                       "hard seam). Either way an image token sees only its own α's context."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, eps_b, tokens_1, tokens_2=None, conditioning=None, alpha=0.5, guidance=4.0, steps=20,
                mix_rule="official", context="redux_only", bf16_state=False, mask=None, alpha_masked=0.5,
                mask_levels=2, image_attention="whole_image") -> io.NodeOutput:
        noise = noise_from_latent(eps_b, "eps_b")
        seed = eps_b.get("vmdiff", {}).get("seed", 0)
        out = run_mixing_denoise(model, noise, tokens_1, tokens_2, conditioning, alpha, guidance, steps, mix_rule,
                                 context, seed, bf16_state=bf16_state, mask=mask, alpha_masked=alpha_masked,
                                 mask_levels=mask_levels, image_attention=image_attention)
        text = (f"α = {alpha:g} ({mix_rule}), γ = {guidance:g}, {out['nfe']} NFE" if tokens_2 is not None else
                f"pre-mixed tokens_1 ({tokens_1.tokens.shape[1]} tokens; α, mix_rule unused), γ = {guidance:g}, "
                f"{out['nfe']} NFE")
        if "block_alphas" in out:
            text += f"; α map: {len(out['block_alphas'])} context block(s), α = " + \
                ", ".join(f"{a:g}" for a in out["block_alphas"]) + f" ({image_attention})"
        if "slerp_fraction" in out:
            text += f"; {100 * out['slerp_fraction']:.1f}% of tokens took the slerp branch"
        return io.NodeOutput({"samples": out["latent"]}, ui=ui.PreviewText(text))
