"""VMDiff Fusion Prompt: the guidance prompt P from the two labels, encoded to its CLIP-L pooled vector."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.stages.prompt import DEFAULT_TEMPLATE, check_one_clip_window, fusion_prompt
from ..vmdiff_comfy.discovery import with_discovery


@with_discovery
class VMDiffFusionPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffFusionPrompt",
            display_name="VMDiff Fusion Prompt",
            category="VMDiff",
            description="Builds the guidance prompt from the two object labels and encodes it. VMDiff uses only its "
                        "CLIP-L pooled vector (the reference computes T5 and throws it away).",
            inputs=[
                io.Clip.Input("clip", tooltip="CLIP-L alone (Load CLIP: clip_l.safetensors, type stable_diffusion) "
                                              "skips T5-XXL and saves ~9.5 GB; a Flux DualCLIP also works."),
                io.String.Input("label_1", default="owl", tooltip="What image 1 shows (T1)."),
                io.String.Input("label_2", default="jar", tooltip="What image 2 shows (T2)."),
                io.String.Input("template", default=DEFAULT_TEMPLATE, tooltip="{T1} and {T2} are replaced."),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning"), io.String.Output(display_name="prompt")],
        )

    @classmethod
    def execute(cls, clip, label_1, label_2, template=DEFAULT_TEMPLATE) -> io.NodeOutput:
        prompt = fusion_prompt(label_1, label_2, template)
        tokens = clip.tokenize(prompt)
        check_one_clip_window(clip, tokens, {"label_1": label_1, "label_2": label_2}, template)
        encoded = clip.encode_from_tokens(tokens, return_pooled="unprojected", return_dict=True)
        cond = encoded.pop("cond")
        return io.NodeOutput([[cond, encoded]], prompt, ui=ui.PreviewText(prompt))
