"""VMDiff MagicMix: semantic mixing (Liew et al.) of a layout (image or prompt) with a content condition, on any
model ComfyUI samples (ε-prediction SD1.5/SDXL, rectified-flow Flux), through the pack's one Euler integrator."""
from __future__ import annotations

import math

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import guard_inputs
from ..vmdiff_comfy.stages import settings
from ..vmdiff_comfy.stages.magicmix import run_magicmix
from ..vmdiff_comfy.stages.settings import MAGICMIX
from ..vmdiff_comfy.stages.sockets import ReduxTokensType
from ..vmdiff_comfy.discovery import with_discovery

WIDGETS = ("seed", "steps", "scheduler", "k_max", "k_min", "nu", "cfg", "width", "height", "reweight_scale",
           "reweight_tokens")


@with_discovery
@guard_inputs
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
                *settings.inputs(*WIDGETS, table=MAGICMIX),
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
    def validate_inputs(cls, **values):
        k_max, k_min = values.get("k_max"), values.get("k_min")  # after @guard_inputs's range checks
        if None not in (k_max, k_min) and k_min > k_max:
            return f"k_min {k_min} must not exceed k_max {k_max}"
        return True

    @classmethod
    def execute(cls, model, content, layout_image=None, vae=None, layout_conditioning=None, content_tokens=None,
                negative=None, **widgets) -> io.NodeOutput:
        v = settings.with_defaults(WIDGETS, widgets, MAGICMIX)
        out = run_magicmix(model, content, layout_image=layout_image, vae=vae, layout_conditioning=layout_conditioning,
                           content_tokens=content_tokens, negative=negative, **{k: v[k] for k in WIDGETS})
        steps, nu, cfg = v["steps"], v["nu"], v["cfg"]
        i_max, i_min, sigmas = out.i_max, out.i_min, out.sigmas
        layout = "image" if layout_image is not None else f"prompt ({i_min} layout-prompt steps first)"
        guided = negative is not None and not math.isclose(cfg, 1.0)
        text = (f"MagicMix, layout from {layout}: K_max = {steps - i_max} (σ = {float(sigmas[i_max]):.4f}), "
                f"K_min = {steps - i_min} (σ = {float(sigmas[i_min]):.4f}) of T = {steps}; {i_min - i_max} layout "
                f"steps with ν = {nu:g}, {steps - i_min} content steps; {out.nfe} model calls"
                + (f" × 2 (cfg {cfg:g})" if guided else ""))
        return io.NodeOutput({"samples": out.latent}, ui=ui.PreviewText(text))
