"""SAM (segment-anything): box → object mask for the 'sam' isolation."""
from __future__ import annotations

import importlib.util

import torch

from ..errors import VMDiffInputError
from .files import SCORE_FOLDERS, load_into, load_weights_safely, resolve_weight_file
from .scorer import ScorerModel


SAM_VARIANTS = {(1280, 32): "vit_h", (1024, 24): "vit_l", (768, 12): "vit_b"}


def sam_config_from_state_dict(sd: dict) -> dict:
    """The segment-anything architecture a checkpoint was saved from, read off its tensor shapes: this recognises
    vit_h / vit_l / vit_b (and any smaller variant) without a model-type widget."""
    def count(prefix):
        return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})

    try:
        embed_dim, _, patch, _ = sd["image_encoder.patch_embed.proj.weight"].shape
        grid = sd["image_encoder.pos_embed"].shape[1]
        depth = count("image_encoder.blocks.")
        rel = [sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape for i in range(depth)]
        prompt_dim = sd["image_encoder.neck.0.weight"].shape[0]
        config = dict(
            embed_dim=embed_dim, depth=depth, patch_size=patch, img_size=grid * patch, num_heads=embed_dim // rel[0][1],
            mlp_ratio=sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
            global_attn_indexes=[i for i, r in enumerate(rel) if r[0] == 2 * grid - 1],
            window_size=next(((r[0] + 1) // 2 for r in rel if r[0] != 2 * grid - 1), 14),
            prompt_embed_dim=prompt_dim, mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            decoder_depth=count("mask_decoder.transformer.layers."),
            decoder_mlp_dim=sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
            iou_head_depth=count("mask_decoder.iou_prediction_head.layers."),
            iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        )
    except (KeyError, IndexError) as e:
        raise VMDiffInputError(f"sams: not a segment-anything checkpoint (no tensor {e}). "
                               f"Expected {SCORE_FOLDERS['sams'][1]}.") from e
    config["variant"] = SAM_VARIANTS.get((embed_dim, depth), "custom")
    return config


def build_sam(config: dict):
    """A segment_anything ``Sam`` of the given architecture (the library's builders hard-code vit_h/l/b)."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    c = config
    grid = c["img_size"] // c["patch_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=c["depth"], embed_dim=c["embed_dim"], img_size=c["img_size"], mlp_ratio=c["mlp_ratio"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=c["num_heads"], patch_size=c["patch_size"],
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=c["global_attn_indexes"],
            window_size=c["window_size"], out_chans=c["prompt_embed_dim"]),
        prompt_encoder=PromptEncoder(
            embed_dim=c["prompt_embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=c["mask_in_chans"]),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=c["num_multimask_outputs"],
            transformer=TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=c["prompt_embed_dim"],
                                          mlp_dim=c["decoder_mlp_dim"], num_heads=8),
            transformer_dim=c["prompt_embed_dim"], iou_head_depth=c["iou_head_depth"],
            iou_head_hidden_dim=c["iou_head_hidden_dim"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


class SamSegmenter(ScorerModel):
    """Box → object mask (the paper's Grounded-SAM), image encoder batched over the images."""

    kind = "segmenter"

    @torch.inference_mode()
    def segment(self, images: torch.Tensor, boxes: list) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1], one pixel xyxy box (or None) each → masks (B, 1, H, W) bool; an image
        without a box keeps every pixel."""
        from segment_anything.utils.transforms import ResizeLongestSide

        h, w = images.shape[-2:]
        masks = torch.ones(len(images), 1, h, w, dtype=torch.bool)
        todo = [i for i, b in enumerate(boxes) if b is not None]
        if not todo:  # nothing to segment: no model load, no resize
            return masks
        sam = self.ready()
        size = sam.image_encoder.img_size
        resized = torch.nn.functional.interpolate(images[todo].float() * 255.0, ResizeLongestSide.get_preprocess_shape(
            h, w, size), mode="bilinear", align_corners=False, antialias=True).to(self.device)
        transform = ResizeLongestSide(size)
        batch = [{"image": image, "original_size": (h, w),
                  "boxes": transform.apply_boxes_torch(torch.as_tensor(boxes[i], dtype=torch.float32)[None],
                                                       (h, w)).to(self.device)} for i, image in zip(todo, resized)]
        self.count(len(batch))
        for i, out in zip(todo, sam(batch, multimask_output=False)):
            masks[i] = out["masks"][0].cpu()
        return masks


def load_sam(checkpoint: str) -> SamSegmenter:
    if importlib.util.find_spec("segment_anything") is None:
        raise VMDiffInputError("sams: the segment_anything package is not installed; pip install segment-anything")
    path = resolve_weight_file("sams", checkpoint)
    sd = load_weights_safely(path, "sams")
    config = sam_config_from_state_dict(sd)
    model = build_sam(config)
    load_into(model, sd, "sams", path)
    return SamSegmenter(model, f"SAM {config['variant']} ({path.name})", dict(config, file=str(path)))
