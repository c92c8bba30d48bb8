"""VMDiff Mixing Denoise (MDeNoise): ε_b → full denoise under SInp = mix(z1, z2, α) → the fused latent."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.stages import settings
from ..vmdiff_comfy.stages.checks import SAMPLING_PATCH_NOTE
from ..vmdiff_comfy.stages.mixing_denoise import run_mixing_denoise
from ..vmdiff_comfy.stages.sockets import ReduxTokensType, noise_from_latent

WIDGETS = ("alpha", "guidance", "steps", "mix_rule", "context", "bf16_state")


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
                *settings.inputs(*WIDGETS),
                settings.stage_settings_input(),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, **values):
        return "; ".join(settings.problems(**values)) or True

    @classmethod
    def execute(cls, model, eps_b, tokens_1, tokens_2=None, conditioning=None, stage_settings=None,
                **widgets) -> io.NodeOutput:
        v = settings.with_defaults(WIDGETS, widgets)
        settings.raise_problems(settings.problems(**v))
        stage, note = settings.resolve(stage_settings, v)
        noise = noise_from_latent(eps_b, "eps_b")
        seed = eps_b.get("vmdiff", {}).get("seed", 0)
        out = run_mixing_denoise(model, noise, tokens_1, tokens_2, conditioning, settings=stage, alpha=v["alpha"],
                                 seed=seed)
        alpha, guidance = v["alpha"], stage.guidance
        text = (f"α = {alpha:g} ({stage.mix_rule}), γ = {guidance:g}, {out.nfe} NFE" if tokens_2 is not None else
                f"pre-mixed tokens_1 ({tokens_1.tokens.shape[1]} tokens; α, mix_rule unused), γ = {guidance:g}, "
                f"{out.nfe} NFE")
        if out.slerp_fraction is not None:
            text += f"; {100 * out.slerp_fraction:.1f}% of tokens took the slerp branch"
        text += "".join(f"; {n}" for n in (note, SAMPLING_PATCH_NOTE if out.sampling_patched else "") if n)
        return io.NodeOutput({"samples": out.latent}, ui=ui.PreviewText(text))
