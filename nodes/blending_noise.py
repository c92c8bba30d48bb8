"""VMDiff Blending Noise (BNoise): ε → guided denoise to t_den under SCat(β1·z1, β2·z2) → inversion to σ = 1 → ε_b."""
from __future__ import annotations

import torch

import comfy.sample
from comfy_api.latest import io, ui

from ..vmdiff_ops import (INVERSION_RULES, NFECounter, blending_noise, flow_sigma_grid, flux_mu, scale_concat,
                          t_den_sigma)
from .common import (CONTEXT_MODES, BlendedNoise, ReduxTokensType, VMDiffInputError, check_token_pair,
                     flux_model_info, grid_problems, noise_space_latent, phase_conditioning, run_flow_program)


def check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value % 16 or value < 16:
            raise VMDiffInputError(f"{name}: {value} is not a positive multiple of 16 (Flux packs 2×2 latent patches "
                                   f"of an 8× VAE); try {max(16, round(value / 16) * 16)}")


def initial_noise(seed: int, channels: int, width: int, height: int) -> torch.Tensor:
    """ε: ComfyUI's seeded noise (float32 CPU randn), the same values the reference draws before bf16 rounding."""
    return comfy.sample.prepare_noise(torch.zeros(1, channels, height // 8, width // 8), seed)


def run_blending_noise(model, tokens_1, tokens_2, conditioning, seed, width, height, steps=20, t_den_step=10,
                       guidance_denoise=5.0, guidance_invert=0.0, beta_1=1.0, beta_2=1.0, inversion="lagged",
                       context="redux_only", callback=None, bf16_state=False) -> dict:
    """ε_b for one (β1, β2, seed); returns ε_b, the t_den preview latent, the σ grid and the NFE count.
    β1 and β2 may also be equal-length lists: one batch element per (β1, β2) pair, all from the same ε."""
    info = flux_model_info(model)
    check_token_pair(tokens_1, tokens_2, info)
    check_size(width, height)
    if not 0 <= t_den_step <= steps - 2:
        raise VMDiffInputError(f"t_den_step: {t_den_step} is outside the {steps}-step grid; use 0…{steps - 2}")
    if inversion not in INVERSION_RULES:
        raise VMDiffInputError(f"inversion: unknown rule {inversion!r}; expected one of {tuple(INVERSION_RULES)}")
    betas = list(zip(*(v if isinstance(v, (list, tuple)) else [v] for v in (beta_1, beta_2)), strict=True))
    for pair in betas:
        for name, beta in zip(("beta_1", "beta_2"), pair):
            if not beta > 0:
                raise VMDiffInputError(f"{name}: must be > 0 (it scales a token set), got {beta}")
    if tokens_2 is None:  # tokens_1 is already a concatenation (VMDiff Mix Tokens N's concat), scaled by β1
        scat = torch.cat([tokens_1.tokens * b1 for b1, _ in betas])
    else:
        scat = torch.cat([scale_concat(tokens_1.tokens, tokens_2.tokens, b1, b2) for b1, b2 in betas])
    phases = {
        "denoise": phase_conditioning(conditioning, scat, guidance_denoise, context, info["vec_dim"]),
        "invert": phase_conditioning(conditioning, scat, guidance_invert, context, info["vec_dim"]),
    }
    sigmas = flow_sigma_grid(steps, flux_mu(width, height))
    counter = NFECounter()
    state_dtype = torch.bfloat16 if bf16_state else None  # parity: the reference keeps ε and latents in bf16
    preview = {}

    def program(velocity_for, eps, on_step):
        def hook(i, x_in, sigma, v, x_out):
            if i == t_den_step:  # the clean-image estimate at t_den under SCat: what ε_b encodes
                preview["x0"] = x_in - sigma * v
            on_step(i, x_in, sigma, v, x_out)

        eps_b, _ = blending_noise(eps, sigmas, t_den_step, velocity_for("denoise"), velocity_for("invert"),
                                  inversion=inversion, counter=counter, on_step=hook, state_dtype=state_dtype)
        return {"x": eps_b, "preview": preview["x0"]}

    eps = initial_noise(seed, info["latent_channels"], width, height).expand(len(betas), -1, -1, -1).clone()
    if state_dtype is not None:
        eps = eps.to(state_dtype).float()
    out = run_flow_program(model, phases, eps, program, sigmas, 2 * (t_den_step + 1), seed, callback)
    out.update(sigmas=sigmas, nfe=counter.samples)
    return out


class VMDiffBlendingNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffBlendingNoise",
            display_name="VMDiff Blending Noise",
            category="VMDiff",
            description="BNoise: denoises random noise ε to t_den under the concatenated tokens SCat = [β1·z1; β2·z2] "
                        "(Flux guidance γ_den), then inverts the flow back to σ = 1 (γ_inv) → semantic noise ε_b "
                        "that already carries both objects.",
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1 dev / Krea (any format ComfyUI loads: bf16, fp8, GGUF)."),
                ReduxTokensType.Input("tokens_1", tooltip="z1 from VMDiff Redux Encode."),
                ReduxTokensType.Input("tokens_2", optional=True,
                                      tooltip="z2 from VMDiff Redux Encode. Leave unconnected when tokens_1 is the "
                                              "concat output of VMDiff Mix Tokens N (N objects; β2 is not used)."),
                io.Conditioning.Input("conditioning", tooltip="The fusion prompt; only its CLIP-L pooled vector is "
                                                              "used in redux_only context."),
                io.Int.Input("seed", default=42, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the starting noise ε."),
                io.Int.Input("width", default=512, min=16, max=4096, step=16, tooltip="Output width (reference 512)."),
                io.Int.Input("height", default=512, min=16, max=4096, step=16, tooltip="Output height."),
                io.Int.Input("steps", default=20, min=2, max=200, tooltip="Steps of the σ grid (μ from the size)."),
                io.Int.Input("t_den_step", default=10, min=0, max=198,
                             tooltip="t_den as a step index: denoise evaluates σ_0…σ_t_den, then inverts. 10 of 20 "
                                     "is t ≈ 652 at 512²; must be ≤ steps − 2."),
                io.Float.Input("guidance_denoise", default=5.0, min=0.0, max=100.0, step=0.1,
                               tooltip="γ_den, Flux guidance while denoising to t_den."),
                io.Float.Input("guidance_invert", default=0.0, min=0.0, max=100.0, step=0.1,
                               tooltip="γ_inv, Flux guidance while inverting to σ = 1."),
                io.Float.Input("beta_1", default=1.0, min=0.01, max=10.0, step=0.01, tooltip="β1, the weight of z1."),
                io.Float.Input("beta_2", default=1.0, min=0.01, max=10.0, step=0.01, tooltip="β2, the weight of z2."),
                io.Combo.Input("inversion", options=list(INVERSION_RULES), default="lagged",
                               tooltip="lagged: the reference's rule (source latent, destination timestep); "
                                       "exact-euler: velocity at the source σ."),
                io.Combo.Input("context", options=list(CONTEXT_MODES), default="redux_only",
                               tooltip="redux_only: the reference (Redux tokens only); text_and_redux: the "
                                       "prompt's text tokens first, then the Redux tokens."),
                io.Boolean.Input("bf16_state", default=False,
                                 tooltip="Parity with the reference code: round ε and the latent to bf16 after "
                                         "every step (off: float32, ComfyUI's default)."),
            ],
            outputs=[
                io.Latent.Output(display_name="eps_b", tooltip="ε_b in noise space, for VMDiff Mixing Denoise."),
                io.Noise.Output(display_name="noise", tooltip="ε_b as NOISE for SamplerCustomAdvanced (σ_0 = 1)."),
                io.Latent.Output(display_name="t_den_preview",
                                 tooltip="The model's clean-image estimate at t_den under SCat; VAE-decode to see "
                                         "the blend that ε_b carries."),
            ],
        )

    @classmethod
    def validate_inputs(cls, steps, t_den_step):
        return "; ".join(grid_problems(steps, t_den_step)) or True

    @classmethod
    def execute(cls, model, tokens_1, tokens_2=None, conditioning=None, seed=42, width=512, height=512, steps=20,
                t_den_step=10, guidance_denoise=5.0, guidance_invert=0.0, beta_1=1.0, beta_2=1.0, inversion="lagged",
                context="redux_only", bf16_state=False) -> io.NodeOutput:
        out = run_blending_noise(model, tokens_1, tokens_2, conditioning, seed, width, height, steps, t_den_step,
                                 guidance_denoise, guidance_invert, beta_1, beta_2, inversion, context,
                                 bf16_state=bf16_state)
        eps_b = out["x"]
        sigma_den = t_den_sigma(out["sigmas"], t_den_step)
        record = dict(seed=seed, beta_1=beta_1, beta_2=beta_2, steps=steps, t_den_step=t_den_step,
                      sigma_den=sigma_den, inversion=inversion, width=width, height=height, nfe=out["nfe"])
        preview = {"samples": model.model.process_latent_out(out["preview"])}
        text = (f"ε_b: {out['nfe']} NFE ({t_den_step + 1} denoise at γ={guidance_denoise:g}, {t_den_step + 1} invert "
                f"at γ={guidance_invert:g}); t_den = step {t_den_step} of {steps} (σ = {sigma_den:.4f}, "
                f"t ≈ {1000 * sigma_den:.0f}); β = ({beta_1:g}, {beta_2:g}); seed {seed}")
        return io.NodeOutput(noise_space_latent(eps_b, **record), BlendedNoise(eps_b, seed), preview,
                             ui=ui.PreviewText(text))
