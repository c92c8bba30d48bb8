"""VMDiff Mixing Denoise (MDeNoise): ε_b → full denoise under SInp = mix(z1, z2, α) → the fused latent."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import guard_inputs
from ..vmdiff_comfy.stages import settings
from ..vmdiff_comfy.stages.checks import SAMPLING_PATCH_NOTE
from ..vmdiff_comfy.stages.mixing_denoise import run_mixing_denoise
from ..vmdiff_comfy.stages.reference import describe
from ..vmdiff_comfy.stages.regional import AlphaMap
from ..vmdiff_comfy.stages.sockets import ReduxTokensType, noise_from_latent
from ..vmdiff_comfy.discovery import with_discovery

WIDGETS = ("alpha", "guidance", "steps", "mix_rule", "context", "bf16_state", "alpha_masked", "mask_levels",
           "image_attention")


@with_discovery
@guard_inputs
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
                io.Mask.Input("mask", optional=True,
                              tooltip="Part-level fusion: a spatial α. alpha applies where the mask is 0, "
                                      "alpha_masked where it is 1 (e.g. the head of one object, the body of the "
                                      "other). Resized to the image-token grid (16 px per token)."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, eps_b, tokens_1, tokens_2=None, conditioning=None, stage_settings=None, mask=None,
                **widgets) -> io.NodeOutput:
        v = settings.with_defaults(WIDGETS, widgets)
        stage, note = settings.resolve(stage_settings, v)
        noise = noise_from_latent(eps_b, "eps_b")
        seed = eps_b.get("vmdiff", {}).get("seed", 0)
        alpha_map = None if mask is None else AlphaMap(mask, v["alpha_masked"], v["mask_levels"],
                                                       v["image_attention"])
        out = run_mixing_denoise(model, noise, tokens_1, tokens_2, conditioning, settings=stage, alpha=v["alpha"],
                                 seed=seed, alpha_map=alpha_map)
        alpha, guidance = v["alpha"], stage.guidance
        rule = "reference attention" if hasattr(tokens_1, "latents") else stage.mix_rule
        text = (f"α = {alpha:g} ({rule}), γ = {guidance:g}, {out.nfe} NFE" if tokens_2 is not None else
                f"pre-mixed tokens_1 ({describe(tokens_1)}; α, mix_rule unused), γ = {guidance:g}, "
                f"{out.nfe} NFE")
        if out.block_alphas is not None:
            text += (f"; α map: {len(out.block_alphas)} context block(s), α = "
                     f"{', '.join(f'{a:g}' for a in out.block_alphas)} ({v['image_attention']})")
        if out.slerp_fraction is not None:
            text += f"; {100 * out.slerp_fraction:.1f}% of tokens took the slerp branch"
        text += "".join(f"; {n}" for n in (note, SAMPLING_PATCH_NOTE if out.sampling_patched else "") if n)
        return io.NodeOutput({"samples": out.latent}, ui=ui.PreviewText(text))
