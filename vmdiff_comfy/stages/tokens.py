"""Token-set stages: Redux Encode's z_k of one image, and Mix Tokens N's SInp / SCat of 2–4 sets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...vmdiff_ops import mix_tokens_n, normalized_weights
from ...vmdiff_ops.score import central_region
from ..errors import VMDiffInputError
from .checks import check_is_tokens, check_same_encoder, image_input
from .settings import ops_errors
from .sockets import ReduxTokens, fingerprint

RESIZE_MODES = ("squash", "center_crop", "nearest_512_squash")


def to_rgb(image: torch.Tensor, input_name: str) -> tuple[torch.Tensor, str]:
    """A single RGB image (1, H, W, 3); alpha is dropped (as the reference's PIL convert('RGB')), grey repeated."""
    image = image_input(input_name, image)
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
    """z = Redux(SigLIP(image)): the raw token set, without any text tokens (reference image_embedders.py:66-103)."""
    if resize not in RESIZE_MODES:
        raise VMDiffInputError(f"resize: unknown mode {resize!r}; expected one of {RESIZE_MODES}")
    rgb, note = to_rgb(image, "image")
    if resize == "nearest_512_squash":  # the reference's PIL NEAREST resize to 512², then SigLIP's squash
        rgb = F.interpolate(rgb.movedim(-1, 1), size=(512, 512), mode="nearest").movedim(1, -1)
    if resize == "center_crop":  # a strip beyond 16:1: only its middle reaches ComfyUI's crop (memory)
        rgb = central_region(rgb.movedim(-1, 1)).movedim(1, -1)
    output = clip_vision.encode_image(rgb, crop=(resize == "center_crop"))
    tokens = style_model.get_cond(output)
    if tokens.ndim != 3 or tokens.shape[0] != 1:
        raise VMDiffInputError(f"style_model: expected a Redux model giving (1, N, C) tokens, "
                               f"got {tuple(tokens.shape)}")
    encoder_id = fingerprint(clip_vision.model, style_model.model)
    info = {"image_size": tuple(image.shape[1:3]), "resize": resize, "note": note}
    return ReduxTokens(tokens=tokens.float(), encoder_id=encoder_id, info=info)


def mix_token_sets(sets: list, weights: list, rule: str) -> tuple[ReduxTokens, ReduxTokens, list[float]]:
    """(SInp, SCat, normalised weights) of the connected token sets [(k, z_k)]; errors name the input to fix.
    Reference latents (VMDiff Reference Encode) are mixed by attention weights instead (stages.reference)."""
    if any(not isinstance(t, ReduxTokens) and hasattr(t, "latents") for _, t in sets):
        from .reference import mix_reference_sets  # reference imports this module (to_rgb)
        return mix_reference_sets(sets, weights)
    named = [(f"tokens_{k}", t) for k, t in sets]
    for name, t in named:
        check_is_tokens(name, t)
    check_same_encoder(named)
    with ops_errors("weights / mix_rule: "):
        w = normalized_weights(weights, len(sets)).tolist()
        mixed = mix_tokens_n([t.tokens for _, t in sets], w, rule)
    names = [name for name, _ in named]
    encoder = sets[0][1].encoder_id
    sinp = ReduxTokens(mixed, encoder, {"mixed": names, "weights": w, "rule": rule})
    scat = ReduxTokens(torch.cat([t.tokens for _, t in sets], dim=1), encoder, {"concat": names})
    return sinp, scat, w
