"""VMDiff MagicMix: semantic mixing (Liew et al.) of a layout (image or prompt) with a content condition, on any
model ComfyUI samples (ε-prediction SD1.5/SDXL, rectified-flow Flux), through the pack's one Euler integrator."""
from __future__ import annotations

import math

import comfy.samplers
from comfy_api.latest import io, ui

from ..vmdiff_comfy.stages.checks import widget_problems
from ..vmdiff_comfy.stages.magicmix import REWEIGHT_TOOLTIP, run_magicmix
from ..vmdiff_comfy.stages.sockets import ReduxTokensType


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
        out = run_magicmix(model, content, seed=seed, steps=steps, scheduler=scheduler, k_max=k_max, k_min=k_min,
                           nu=nu, cfg=cfg, layout_image=layout_image, vae=vae,
                           layout_conditioning=layout_conditioning, content_tokens=content_tokens,
                           negative=negative, width=width, height=height, reweight_tokens=reweight_tokens,
                           reweight_scale=reweight_scale)
        i_max, i_min, sigmas = out.i_max, out.i_min, out.sigmas
        layout = "image" if layout_image is not None else f"prompt ({i_min} layout-prompt steps first)"
        guided = negative is not None and not math.isclose(cfg, 1.0)
        text = (f"MagicMix, layout from {layout}: K_max = {steps - i_max} (σ = {float(sigmas[i_max]):.4f}), "
                f"K_min = {steps - i_min} (σ = {float(sigmas[i_min]):.4f}) of T = {steps}; {i_min - i_max} layout "
                f"steps with ν = {nu:g}, {steps - i_min} content steps; {out.nfe} model calls"
                + (f" × 2 (cfg {cfg:g})" if guided else ""))
        return io.NodeOutput({"samples": out.latent}, ui=ui.PreviewText(text))
