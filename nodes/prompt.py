"""VMDiff Fusion Prompt: the guidance prompt P from the two labels, encoded to its CLIP-L pooled vector."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import VMDiffInputError

DEFAULT_TEMPLATE = "A photo of {T1} creatively fused with {T2}."


def fusion_prompt(label_1: str, label_2: str, template: str = DEFAULT_TEMPLATE) -> str:
    """P = "A photo of <T1> creatively fused with <T2>." (the paper's prompt)."""
    for name, label in (("label_1", label_1), ("label_2", label_2)):
        if not label.strip():
            raise VMDiffInputError(f"{name}: the object label is empty; name the object in image "
                                   f"{name[-1]} (e.g. 'owl')")
    if "{T1}" not in template or "{T2}" not in template:
        raise VMDiffInputError("template: must contain both {T1} and {T2}")
    return template.replace("{T1}", label_1.strip()).replace("{T2}", label_2.strip())


def check_one_clip_window(tokens: dict, label_1: str, label_2: str) -> None:
    """VMDiff uses only CLIP-L's pooled vector, which sees the first 77-token window: a longer prompt (ComfyUI
    splits it into windows) would silently lose its end, e.g. the second label."""
    windows = len(tokens.get("l", ()))
    if windows > 1:
        name, label = max((("label_1", label_1), ("label_2", label_2)), key=lambda item: len(item[1]))
        cause = f"{name}: its {len(label)} characters make" if len(label) >= 60 else "template: it makes"
        raise VMDiffInputError(
            f"{cause} the fusion prompt {windows} CLIP windows long, but VMDiff uses CLIP-L's pooled vector, which "
            f"reads only the first 77 tokens (the rest, e.g. the other label, would be lost); name each object in a "
            f"few words (e.g. 'owl')")


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
        check_one_clip_window(tokens, label_1, label_2)
        encoded = clip.encode_from_tokens(tokens, return_pooled="unprojected", return_dict=True)
        cond = encoded.pop("cond")
        return io.NodeOutput([[cond, encoded]], prompt, ui=ui.PreviewText(prompt))
