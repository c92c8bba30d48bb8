"""The reference-image workflows (vmdiff_kontext, vmdiff_flux2, vmdiff_flux2_auto_tune) on the CPU stand-ins: the
files they name do not exist here, so their loaders are swapped for stand-ins of the same family."""
from __future__ import annotations

import torch

#: Sizes and steps the stand-ins run in seconds (merged into the template test's STAND_INS).
REFERENCE_STAND_INS = {
    "ImageScaleToTotalPixels": {"megapixels": 0.01},
    "Flux2Scheduler": {"steps": 2, "width": 32, "height": 32},
    "EmptyFlux2LatentImage": {"width": 32, "height": 32},
}
FLUX2_TEXT_WIDTH = 768  # the CLIP-L stand-in file's width (the tiny FLUX.2 takes any context width)


def on_clip_l(api: dict, loader: str, widener: str, width: int) -> dict:
    """In place: the text-encoder loader node ``loader`` becomes CLIP-L (the stand-in file), and every conditioning
    encoded with it passes through the test-only ``widener`` node (VMDiffTestFluxText / VMDiffTestFlux2Text), which
    pads it to the model's text ``width``; the widened node's id is the text node's with a leading 9."""
    api[loader] = {"class_type": "CLIPLoader", "inputs": {"clip_name": "clip_l.safetensors",
                                                          "type": "stable_diffusion"}}
    for text in [k for k, v in api.items() if v["inputs"].get("clip") == [loader, 0]]:
        widened = f"9{text}"
        for node in api.values():
            node["inputs"].update({n: [widened, 0] for n, v in node["inputs"].items() if v == [text, 0]})
        api[widened] = {"class_type": widener, "inputs": {"conditioning": [text, 0], "width": width}}
    return api


def reference_stand_ins(api: dict) -> dict:
    """In place: a Kontext file → the tiny FLUX.1-architecture file (same layout as Kontext); a FLUX.2 model / VAE
    file → the test-only tiny FLUX.2 loaders (0.8.0 cannot load a small FLUX.2 file); a FLUX.2 text encoder → CLIP-L
    whose every encoded text is widened to FLUX.2's text shape (VMDiffTestFlux2Text, no pooled vector)."""
    for key, node in list(api.items()):
        inputs = node["inputs"]
        if node["class_type"] == "UNETLoader" and "kontext" in str(inputs.get("unet_name")):
            inputs["unet_name"] = "flux1-krea-dev.safetensors"
        elif node["class_type"] == "UNETLoader" and "flux-2" in str(inputs.get("unet_name")):
            api[key] = {"class_type": "VMDiffTestTinyFlux2", "inputs": {"seed": 0, "variant": "klein",
                                                                       "context_dim": FLUX2_TEXT_WIDTH}}
        elif node["class_type"] == "VAELoader" and "flux2" in str(inputs.get("vae_name")):
            api[key] = {"class_type": "VMDiffTestTinyFlux2VAE", "inputs": {"seed": 0}}
        elif node["class_type"] == "CLIPLoader" and inputs.get("type") == "flux2":
            on_clip_l(api, key, "VMDiffTestFlux2Text", FLUX2_TEXT_WIDTH)
    return api


def reference_image(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """A random IMAGE (1, h, w, 3) in [0, 1] of ``seed``: a reference picture for the in-process tests."""
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


class PassCounter:
    """Counts DiT forward passes through ComfyUI's model_function_wrapper and the references each one carried
    (``refs``: one entry per pass). Use ``PassCounter(model).model`` in place of ``model``."""

    def __init__(self, model):
        self.model, self.refs = model.clone(), []
        self.model.set_model_unet_function_wrapper(self)

    def __call__(self, apply_model, args):
        self.refs.append(len(args["c"].get("ref_latents") or []))
        return apply_model(args["input"], args["timestep"], **args["c"])
