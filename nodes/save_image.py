"""VMDiff Save Image: ComfyUI's Save Image plus the VMDiff parameters (α, β1, β2, seed, preset, model files) in the
PNG's metadata, so a result can be replayed with the manual workflow."""
from __future__ import annotations

import json

import nodes as comfy_nodes
from comfy_api.latest import io

from ..vmdiff_comfy.errors import VMDiffInputError
from ..vmdiff_comfy.stages.checks import image_input
from ..vmdiff_comfy.discovery import with_discovery

METADATA_KEY = "vmdiff"


@with_discovery
class VMDiffSaveImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffSaveImage",
            display_name="VMDiff Save Image",
            category="VMDiff",
            description="Saves images like Save Image, with the VMDiff parameters as a 'vmdiff' PNG text chunk "
                        "(α, β1, β2, seed, preset, model files) next to the workflow.",
            inputs=[
                io.Image.Input("images"),
                io.String.Input("params", force_input=True, tooltip="The params output of VMDiff Auto-Tune."),
                io.String.Input("filename_prefix", default="vmdiff"),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, params, filename_prefix="vmdiff") -> io.NodeOutput:
        try:
            record = json.loads(params)
        except json.JSONDecodeError as error:
            raise VMDiffInputError(f"params: not the JSON of VMDiff Auto-Tune's params output ({error})") from None
        extra = dict(cls.hidden.extra_pnginfo or {}) if cls.hidden else {}
        extra[METADATA_KEY] = record
        prompt = cls.hidden.prompt if cls.hidden else None
        images = image_input("images", images)  # float16 / bfloat16 / float64 → float32 (PIL has no bf16)
        saved = comfy_nodes.SaveImage().save_images(images, filename_prefix, prompt, extra)
        return io.NodeOutput(ui=saved["ui"])
