"""VMDiff Redux Encode: one image → its Redux token set z_k (SigLIP last_hidden_state → Redux projector)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from comfy_api.latest import io, ui

from .common import ReduxTokens, ReduxTokensType, VMDiffInputError, fingerprint

RESIZE_MODES = ("squash", "center_crop", "nearest_512_squash")


def to_rgb(image: torch.Tensor, input_name: str) -> tuple[torch.Tensor, str]:
    """A single RGB image (1, H, W, 3); alpha is dropped (as the reference's PIL convert('RGB')), grey repeated."""
    if image.ndim != 4:
        raise VMDiffInputError(f"{input_name}: expected an IMAGE tensor (B, H, W, C), got shape {tuple(image.shape)}")
    if image.shape[0] != 1:
        raise VMDiffInputError(f"{input_name}: got a batch of {image.shape[0]} images; a token set is made from one "
                               f"image (pick one with ImageFromBatch)")
    if not torch.isfinite(image).all():
        raise VMDiffInputError(f"{input_name}: contains NaN or infinite pixel values; check the node that made it "
                               f"(e.g. a VAE Decode of a broken latent) or load the image again")
    channels = image.shape[-1]
    if channels == 3:
        return image, ""
    if channels == 4:
        return image[..., :3], "alpha channel dropped"
    if channels == 1:
        return image.repeat(1, 1, 1, 3), "grey image repeated to RGB"
    raise VMDiffInputError(f"{input_name}: images need 1, 3 or 4 channels, got {channels}")


def redux_tokens(clip_vision, style_model, image: torch.Tensor, resize: str) -> ReduxTokens:
    """z = Redux(SigLIP(image)): the raw token set, without any text tokens (spec §2)."""
    if resize not in RESIZE_MODES:
        raise VMDiffInputError(f"resize: unknown mode {resize!r}; expected one of {RESIZE_MODES}")
    rgb, note = to_rgb(image, "image")
    if resize == "nearest_512_squash":  # the reference's PIL NEAREST resize to 512², then SigLIP's squash
        rgb = F.interpolate(rgb.movedim(-1, 1), size=(512, 512), mode="nearest").movedim(1, -1)
    output = clip_vision.encode_image(rgb, crop=(resize == "center_crop"))
    tokens = style_model.get_cond(output)
    if tokens.ndim != 3 or tokens.shape[0] != 1:
        raise VMDiffInputError(f"style_model: expected a Redux model giving (1, N, C) tokens, "
                               f"got {tuple(tokens.shape)}")
    encoder_id = fingerprint(clip_vision.model, style_model.model)
    info = {"image_size": tuple(image.shape[1:3]), "resize": resize, "note": note}
    return ReduxTokens(tokens=tokens.float(), encoder_id=encoder_id, info=info)


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
                io.Combo.Input("resize", options=list(RESIZE_MODES), default="squash",
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
