"""DINOv2 for the identity terms D1, D2: a transformers folder (VMDiff Load DINOv2) or a ComfyUI CLIP_VISION."""
from __future__ import annotations

import torch

from ...vmdiff_ops import score as score_ops
from ..errors import VMDiffInputError
from .files import check_hf_weights, from_pretrained, resolve_hf_folder
from .scorer import ScorerModel, prepare_views


class DinoEncoder(ScorerModel):
    """DINOv2 → the mean of all last_hidden_state tokens (the reference's src/flux/get_sim.py), 224² ImageNet-normalised
    input."""

    kind = "dino"
    image_size = 224

    def encode(self, views: list[torch.Tensor], resize: str = "squash") -> torch.Tensor:
        model = self.ready()
        x = prepare_views(views, self.image_size, resize, short_side=256)
        x = score_ops.normalise_pixels(x, score_ops.IMAGENET_MEAN, score_ops.IMAGENET_STD)
        self.count(len(x))
        with torch.inference_mode():
            hidden = model(pixel_values=x.to(self.device)).last_hidden_state
        return score_ops.mean_token_feature(hidden).cpu()


class ClipVisionDinoEncoder(ScorerModel):
    """A DINOv2-large/giant loaded by ComfyUI's own CLIPVisionLoader (CLIP_VISION). ComfyUI's DINOv2 has fixed
    position embeddings, so it runs at its native 518² with its own preprocessing; same mean-token feature."""

    kind = "dino"

    def __init__(self, clip_vision):
        super().__init__(None, f"CLIP_VISION dinov2 ({clip_vision.image_size}px)",
                         {"image_size": clip_vision.image_size}, patcher=clip_vision.patcher)
        self.clip_vision = clip_vision

    def encode(self, views: list[torch.Tensor], resize: str = "squash") -> torch.Tensor:
        x = prepare_views(views, self.clip_vision.image_size, resize, short_side=self.clip_vision.image_size)
        self.count(len(x))
        out = self.clip_vision.encode_image(x.movedim(1, -1), crop=False)
        return score_ops.mean_token_feature(out["last_hidden_state"]).cpu()


def dino_encoder(model) -> ScorerModel:
    """The DINO input of the Scorer: a VMDiff DINOv2 loader output or a ComfyUI CLIP_VISION holding a DINOv2."""
    if isinstance(model, ScorerModel) and model.kind == "dino":
        return model
    inner = getattr(model, "model", None)
    if hasattr(model, "encode_image") and type(inner).__name__ == "Dinov2Model":
        return ClipVisionDinoEncoder(model)
    if hasattr(model, "encode_image"):
        raise VMDiffInputError(
            f"dino: this CLIP_VISION is a {type(inner).__name__}, not DINOv2. Load dinov2-large/giant with Load "
            f"CLIP Vision, or dinov2-base with VMDiff Load DINOv2")
    raise VMDiffInputError(f"dino: expected VMDiff Load DINOv2 or a DINOv2 CLIP_VISION, got {type(model).__name__}")


def load_dinov2(folder_name: str) -> DinoEncoder:
    """transformers' own loader (it maps the released key names onto the current modules), local files only."""
    from transformers import Dinov2Model

    folder = resolve_hf_folder("dinov2", folder_name)
    weights = check_hf_weights("dinov2", folder)
    model = from_pretrained(Dinov2Model, "dinov2", folder, ignore_missing=("mask_token",))
    config = model.config
    info = {"hidden_size": config.hidden_size, "layers": config.num_hidden_layers, "file": str(weights)}
    return DinoEncoder(model, folder_name, info)
