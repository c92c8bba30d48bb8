"""VMDiff Blending Noise (BNoise): ε → guided denoise to t_den under SCat(β1·z1, β2·z2) → inversion to σ = 1 → ε_b."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import guard_inputs
from ..vmdiff_comfy.stages import settings
from ..vmdiff_comfy.stages.blending_noise import run_blending_noise
from ..vmdiff_comfy.stages.checks import SAMPLING_PATCH_NOTE
from ..vmdiff_comfy.stages.sockets import BlendedNoise, ReduxTokensType, noise_space_latent
from ..vmdiff_comfy.discovery import with_discovery
from ..vmdiff_ops import t_den_sigma

WIDGETS = ("seed", "width", "height", "steps", "t_den_step", "guidance_denoise", "guidance_invert", "beta_1", "beta_2",
           "inversion", "context", "bf16_state")


@with_discovery
@guard_inputs
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
                *settings.inputs(*WIDGETS),
                settings.stage_settings_input(),
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
    def validate_inputs(cls, **values):  # after @guard_inputs's range checks: t_den on the grid
        return "; ".join(settings.grid_problems(values.get("steps"), values.get("t_den_step"))) or True

    @classmethod
    def execute(cls, model, tokens_1, tokens_2=None, conditioning=None, stage_settings=None,
                **widgets) -> io.NodeOutput:
        v = settings.with_defaults(WIDGETS, widgets)
        stage, note = settings.resolve(stage_settings, v)
        out = run_blending_noise(model, tokens_1, tokens_2, conditioning, seed=v["seed"], width=v["width"],
                                 height=v["height"], settings=stage, beta_1=v["beta_1"], beta_2=v["beta_2"])
        seed, steps, t_den_step = v["seed"], stage.steps, stage.t_den_step
        sigma_den = t_den_sigma(out.sigmas, t_den_step)
        record = dict(seed=seed, beta_1=v["beta_1"], beta_2=v["beta_2"], steps=steps, t_den_step=t_den_step,
                      sigma_den=sigma_den, inversion=stage.inversion, width=v["width"], height=v["height"],
                      nfe=out.nfe)
        preview = {"samples": model.model.process_latent_out(out.preview)}
        text = (f"ε_b: {out.nfe} NFE ({t_den_step + 1} denoise at γ={stage.guidance_denoise:g}, {t_den_step + 1} "
                f"invert at γ={stage.guidance_invert:g}); t_den = step {t_den_step} of {steps} (σ = {sigma_den:.4f}, "
                f"t ≈ {1000 * sigma_den:.0f}); β = ({v['beta_1']:g}, {v['beta_2']:g}); seed {seed}"
                + "".join(f"; {n}" for n in (note, SAMPLING_PATCH_NOTE if out.sampling_patched else "") if n))
        return io.NodeOutput(noise_space_latent(out.eps_b, **record), BlendedNoise(out.eps_b, seed), preview,
                             ui=ui.PreviewText(text))
