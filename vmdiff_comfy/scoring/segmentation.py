"""SAM on ``transformers`` (SamModel + SamProcessor): box → object mask for the 'sam' isolation.

Two formats, one model: a Hugging Face folder in ``models/sams`` (facebook/sam-vit-base, -large, -huge), or an
original release file (``sam_vit_{b,l,h}_*.pth``, or any size) whose architecture is read off its tensor shapes and
whose tensors are renamed by ORIGINAL_TO_HF onto the Hugging Face checkpoint names.
"""
from __future__ import annotations

import math

import torch

from ..errors import VMDiffInputError
from .files import (SCORE_FOLDERS, apply_key_map, check_hf_weights, from_pretrained, list_hf_folders,
                    list_weight_files, load_weights_safely, resolve_model)
from .scorer import ScorerModel

KIND = "sams"
SAM_VARIANTS = {(1280, 32): "vit_h", (1024, 24): "vit_l", (768, 12): "vit_b"}
_MLP3 = r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\."

#: The documented key map: segment-anything tensor name (regex) → Hugging Face checkpoint name (facebook/sam-vit-*);
#: first match wins, None drops a buffer; names no rule matches are the same in both. The prompt encoder's Fourier
#: matrix is also the model's shared image embedding (copied in load_sam).
ORIGINAL_TO_HF: list[tuple[str, str | None]] = [
    (r"^pixel_(mean|std)$", None),
    (r"^image_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"^image_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
    (r"^image_encoder\.blocks\.", "vision_encoder.layers."),
    (r"^image_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
    (r"^image_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
    (r"^image_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
    (r"^image_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
    (r"^image_encoder\.", "vision_encoder."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (_MLP3 + r"0\.", r"mask_decoder.\1.proj_in."),  # 3-layer MLPs: in, hidden, out
    (_MLP3 + r"1\.", r"mask_decoder.\1.layers.0."),
    (_MLP3 + r"2\.", r"mask_decoder.\1.proj_out."),
    (r"^mask_decoder\.transformer\.(layers\.\d+\.)?norm(\d|_final_attn)\.",
     r"mask_decoder.transformer.\1layer_norm\2."),
]


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
        config = dict(
            embed_dim=embed_dim, depth=depth, patch_size=patch, img_size=grid * patch, num_heads=embed_dim // rel[0][1],
            mlp_dim=sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0],
            global_attn_indexes=[i for i, r in enumerate(rel) if r[0] == 2 * grid - 1],
            window_size=next(((r[0] + 1) // 2 for r in rel if r[0] != 2 * grid - 1), 14),
            prompt_embed_dim=sd["image_encoder.neck.0.weight"].shape[0],
            mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
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


def hf_sam_config(c: dict):
    """The transformers SamConfig of a sam_config_from_state_dict architecture."""
    from transformers import SamConfig

    if c["iou_head_depth"] != 3:
        raise VMDiffInputError(f"sams: an IoU head of depth {c['iou_head_depth']} is not a released SAM (3)")
    size, patch, dim = c["img_size"], c["patch_size"], c["prompt_embed_dim"]
    return SamConfig(
        vision_config=dict(hidden_size=c["embed_dim"], num_hidden_layers=c["depth"], num_attention_heads=c["num_heads"],
                           image_size=size, patch_size=patch, output_channels=dim, window_size=c["window_size"],
                           global_attn_indexes=c["global_attn_indexes"], mlp_dim=c["mlp_dim"], num_pos_feats=dim // 2),
        prompt_encoder_config=dict(hidden_size=dim, image_size=size, patch_size=patch,
                                   mask_input_channels=c["mask_in_chans"]),
        mask_decoder_config=dict(hidden_size=dim, mlp_dim=c["decoder_mlp_dim"], num_hidden_layers=c["decoder_depth"],
                                 num_multimask_outputs=c["num_multimask_outputs"], iou_head_depth=3,
                                 iou_head_hidden_dim=c["iou_head_hidden_dim"]))


class SamSegmenter(ScorerModel):
    """Box → object mask (the paper's Grounded-SAM), image encoder batched over the images."""

    kind = "segmenter"

    @torch.inference_mode()
    def segment(self, images: torch.Tensor, boxes: list) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1], one pixel xyxy box (or None) each → masks (B, 1, H, W) bool; an image
        without a box keeps every pixel."""
        h, w = images.shape[-2:]
        masks = torch.ones(len(images), 1, h, w, dtype=torch.bool)
        todo = [i for i, b in enumerate(boxes) if b is not None]
        if not todo:  # nothing to segment: no model load, no resize
            return masks
        model = self.ready()
        padded = pad_thin_images(images.float(), self.longest_edge)
        inputs = self.processor(images=[padded[i] for i in todo], do_rescale=False, return_tensors="pt",
                                input_boxes=[[[float(v) for v in boxes[i]]] for i in todo])
        self.count(len(todo))
        out = model(pixel_values=inputs["pixel_values"].to(self.device),
                    input_boxes=inputs["input_boxes"].to(self.device), multimask_output=False)
        found = self.processor.post_process_masks(out.pred_masks.cpu(), inputs["original_sizes"],
                                                  inputs["reshaped_input_sizes"])
        for i, mask in zip(todo, found):
            masks[i] = mask[0][..., :h, :w]  # the padding of a thin image cut off again
        return masks

    @property
    def longest_edge(self) -> int:
        """The longer side SAM's processor resizes to (1024 for the released models; a dict or a SizeDict)."""
        size = getattr(getattr(self.processor, "image_processor", None), "size", None)
        edge = size.get("longest_edge") if isinstance(size, dict) else getattr(size, "longest_edge", None)
        return int(edge or 1024)


def pad_thin_images(images: torch.Tensor, longest_edge: int = 1024) -> torch.Tensor:
    """(B, 3, H, W) images padded (edge pixels repeated, at the bottom / right: boxes keep their coordinates) so
    that SAM's resize of the longer side to ``longest_edge`` leaves at least 2 pixels on the shorter one; a 3000×1
    strip would otherwise become 0 pixels high ("Input and output sizes should be greater than 0"). Images of an
    ordinary aspect (under longest_edge / 2 : 1) come back unchanged (the same tensor)."""
    h, w = images.shape[-2:]
    least = math.ceil(2 * max(h, w) / longest_edge)
    if min(h, w) >= least:
        return images
    return torch.nn.functional.pad(images, (0, max(0, least - w), 0, max(0, least - h)), mode="replicate")


def model_choices() -> list[str]:
    """The checkpoint widget: Hugging Face folders and original release files in models/sams."""
    return sorted(list_hf_folders(KIND)) + list_weight_files(KIND)


def load_sam(checkpoint: str) -> SamSegmenter:
    from transformers import SamModel, SamProcessor

    path, folder = resolve_model(KIND, checkpoint)
    if folder:
        check_hf_weights(KIND, path)
        processor = SamProcessor.from_pretrained(str(path), local_files_only=True)
        model = from_pretrained(SamModel, KIND, path)
        vision = model.config.vision_config
        info = {"format": "Hugging Face folder", "file": str(path),
                "variant": SAM_VARIANTS.get((vision.hidden_size, vision.num_hidden_layers), "custom"),
                "img_size": vision.image_size}
    else:
        sd = load_weights_safely(path, KIND)
        config = sam_config_from_state_dict(sd)
        hf = apply_key_map(sd, ORIGINAL_TO_HF)
        hf["shared_image_embedding.positional_embedding"] = hf["prompt_encoder.shared_embedding.positional_embedding"]
        from transformers import SamImageProcessor

        size = config["img_size"]
        processor = SamProcessor(SamImageProcessor(size={"longest_edge": size},
                                                   pad_size={"height": size, "width": size}))
        model = from_pretrained(SamModel, KIND, path, config=hf_sam_config(config), state_dict=hf)
        info = dict(config, format="original release", file=str(path))
    return SamSegmenter(model, f"SAM {info['variant']} ({path.name})", info, processor=processor)
