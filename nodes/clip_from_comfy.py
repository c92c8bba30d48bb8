"""VMDiff CLIP from ComfyUI: the Similarity Score's CLIP (T1, T2) from a core Load CLIP Vision + Load CLIP pair, e.g.
clip_vision_g.safetensors + SDXL's clip_g.safetensors instead of the 10.2 GB OpenCLIP checkpoint."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.scoring.clip_comfy import ComfyClipEncoder
from ..vmdiff_comfy.scoring.sockets import OpenClipType


class VMDiffClipFromComfy(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffClipFromComfy",
            display_name="VMDiff CLIP from ComfyUI",
            category="VMDiff/score",
            description="The score's CLIP (T1, T2) from files ComfyUI already loads: the vision tower (Load CLIP "
                        "Vision, clip_vision_g.safetensors) and the text tower (Load CLIP, clip_g.safetensors) of one "
                        "CLIP model. Goes into the Scorer's open_clip input, in place of VMDiff Load OpenCLIP.",
            inputs=[io.ClipVision.Input("clip_vision", tooltip="Load CLIP Vision: clip_vision_g.safetensors "
                                                               "(OpenCLIP ViT-bigG-14's vision tower)."),
                    io.Clip.Input("clip", tooltip="Load CLIP (type stable_diffusion): clip_g.safetensors (the same "
                                                  "model's text tower), or an SDXL checkpoint's CLIP (its clip_g is "
                                                  "used).")],
            outputs=[OpenClipType.Output(display_name="open_clip")],
        )

    @classmethod
    def execute(cls, clip_vision, clip) -> io.NodeOutput:
        encoder = ComfyClipEncoder(clip_vision, clip)
        text = f"{encoder.name}\nvision: {encoder.info['vision']}\ntext: {encoder.info['text']}"
        return io.NodeOutput(encoder, ui=ui.PreviewText(text))
