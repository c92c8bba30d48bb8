"""VMDiff Redux Encode: one image → its Redux token set z_k (SigLIP last_hidden_state → Redux projector)."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.stages.sockets import ReduxTokensType
from ..vmdiff_comfy.stages.tokens import RESIZE_MODES, redux_tokens
from ..vmdiff_comfy.discovery import with_discovery


@with_discovery
class VMDiffReduxEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffReduxEncode",
            display_name="VMDiff Redux Encode",
            category="VMDiff",
            description="Encodes one object image into its Redux token set z (SigLIP → Redux), the visual condition "
                        "VMDiff blends and mixes. No text tokens are added.",
            inputs=[
                io.ClipVision.Input("clip_vision", tooltip="SigLIP so400m-patch14-384 (sigclip_vision_patch14_384)."),
                io.StyleModel.Input("style_model", tooltip="FLUX.1 Redux (flux1-redux-dev)."),
                io.Image.Input("image", tooltip="One object image; alpha is dropped, grey is made RGB."),
                io.Combo.Input("resize", options=list(RESIZE_MODES), default="squash", optional=True,
                               tooltip="squash: stretch to SigLIP's 384² (the reference); center_crop: ComfyUI's "
                                       "crop; nearest_512_squash: the reference's NEAREST 512² resize first "
                                       "(bit-level parity)."),
            ],
            outputs=[ReduxTokensType.Output(display_name="tokens")],
        )

    @classmethod
    def execute(cls, clip_vision, style_model, image, resize="squash") -> io.NodeOutput:
        z = redux_tokens(clip_vision, style_model, image, resize)
        h, w = z.info["image_size"]
        text = f"z: {z.tokens.shape[1]} tokens × {z.tokens.shape[2]} from a {w}×{h} image ({resize})"
        if z.info["note"]:
            text += f"; {z.info['note']}"
        return io.NodeOutput(z, ui=ui.PreviewText(text))
