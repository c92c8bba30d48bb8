"""GroundingDINO on ``transformers`` (GroundingDinoForObjectDetection): the object's box for the isolation step.

Two formats, one model:

* a Hugging Face folder in ``models/grounding-dino`` (IDEA-Research/grounding-dino-tiny or -base: config.json,
  model.safetensors, the tokenizer files), loaded by transformers itself;
* the original release file (``groundingdino_swint_ogc.pth``, ``groundingdino_swinb_cogcoor.pth``) + a
  ``bert-base-uncased`` folder: its config (built in, or a ``*.cfg.py`` read as literals, never executed) becomes a
  GroundingDinoConfig, its tensors are renamed by ORIGINAL_TO_HF onto the names of the Hugging Face checkpoints, and
  transformers loads that state dict as it loads a downloaded one.

The box rule is the reference's (GroundingDINO util/inference.py, run_single.py:505-537): the processor's grounded
post-processing (sigmoid, max over tokens, ``> box_threshold``, boxes scaled to the real image size), then NMS and the
single most confident box. """
from __future__ import annotations

import ast
import json
from pathlib import Path

import torch

import folder_paths

from ...vmdiff_ops import score as score_ops
from ..errors import VMDiffInputError
from .files import (CONFIG_EXTENSIONS, SCORE_FOLDERS, apply_key_map, check_hf_weights, from_pretrained,
                    list_files, list_hf_folders, list_weight_files, load_weights_safely, missing_file_message,
                    pick_the_folder_error, resolve_hf_folder, resolve_model)
from .scorer import ScorerModel

KIND = "grounding-dino"
_SWIN = r"model.backbone.conv_encoder.model."
_BLOCK = r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\."
_HF_BLOCK = _SWIN + r"encoder.layers.\1.blocks.\2."
_ENC, _DEC = r"^transformer\.encoder\.", r"^transformer\.decoder\."

#: The documented key map: original GroundingDINO tensor name (regex) → Hugging Face checkpoint name (the naming of
#: IDEA-Research/grounding-dino-tiny's model.safetensors); first match wins, None drops a buffer, {qkv} splits a
#: fused projection (see files.apply_key_map). Written from the module structure of both implementations; the
#: equivalence test (tests/nodes/test_score_equivalence.py) proves it on random weights.
ORIGINAL_TO_HF: list[tuple[str, str | None]] = [
    # Swin backbone
    (r"^backbone\.0\.patch_embed\.proj\.", _SWIN + "embeddings.patch_embeddings.projection."),
    (r"^backbone\.0\.patch_embed\.norm\.", _SWIN + "embeddings.norm."),
    (_BLOCK + r"norm1\.", _HF_BLOCK + "layernorm_before."),
    (_BLOCK + r"norm2\.", _HF_BLOCK + "layernorm_after."),
    (_BLOCK + r"attn\.relative_position_bias_table$", _HF_BLOCK + "attention.self.relative_position_bias_table"),
    (_BLOCK + r"attn\.relative_position_index$", None),
    (_BLOCK + r"attn\.qkv\.", _HF_BLOCK + "attention.self.{qkv}."),
    (_BLOCK + r"attn\.proj\.", _HF_BLOCK + "attention.output.dense."),
    (_BLOCK + r"mlp\.fc1\.", _HF_BLOCK + "intermediate.dense."),
    (_BLOCK + r"mlp\.fc2\.", _HF_BLOCK + "output.dense."),
    (r"^backbone\.0\.layers\.(\d+)\.downsample\.", _SWIN + r"encoder.layers.\1.downsample."),
    (r"^backbone\.0\.norm1\.", _SWIN + "hidden_states_norms.stage2."),
    (r"^backbone\.0\.norm2\.", _SWIN + "hidden_states_norms.stage3."),
    (r"^backbone\.0\.norm3\.", _SWIN + "hidden_states_norms.stage4."),
    # text backbone, projections, query embeddings
    (r"^bert\.pooler\.", None),
    (r"^bert\.", "model.text_backbone."),
    (r"^feat_map\.", "model.text_projection."),
    (r"^input_proj\.", "model.input_proj_vision."),
    (r"^transformer\.level_embed$", "model.level_embed"),
    (r"^transformer\.tgt_embed\.", "model.query_position_embeddings."),
    (r"^transformer\.enc_output(_norm)?\.", r"model.enc_output\1."),
    (r"^transformer\.enc_out_bbox_embed\.", "model.encoder_output_bbox_embed."),
    # encoder: deformable image layers, text enhancer layers, fusion layers → one HF layer each
    (_ENC + r"layers\.(\d+)\.self_attn\.", r"model.encoder.layers.\1.deformable_layer.self_attn."),
    (_ENC + r"layers\.(\d+)\.norm1\.", r"model.encoder.layers.\1.deformable_layer.self_attn_layer_norm."),
    (_ENC + r"layers\.(\d+)\.linear(\d)\.", r"model.encoder.layers.\1.deformable_layer.fc\2."),
    (_ENC + r"layers\.(\d+)\.norm2\.", r"model.encoder.layers.\1.deformable_layer.final_layer_norm."),
    (_ENC + r"text_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
     r"model.encoder.layers.\1.text_enhancer_layer.self_attn.{qkv}.\2"),
    (_ENC + r"text_layers\.(\d+)\.self_attn\.out_proj\.",
     r"model.encoder.layers.\1.text_enhancer_layer.self_attn.out_proj."),
    (_ENC + r"text_layers\.(\d+)\.linear(\d)\.", r"model.encoder.layers.\1.text_enhancer_layer.fc\2."),
    (_ENC + r"text_layers\.(\d+)\.norm1\.", r"model.encoder.layers.\1.text_enhancer_layer.layer_norm_before."),
    (_ENC + r"text_layers\.(\d+)\.norm2\.", r"model.encoder.layers.\1.text_enhancer_layer.layer_norm_after."),
    (_ENC + r"fusion_layers\.(\d+)\.gamma_v$", r"model.encoder.layers.\1.fusion_layer.vision_param"),
    (_ENC + r"fusion_layers\.(\d+)\.gamma_l$", r"model.encoder.layers.\1.fusion_layer.text_param"),
    (_ENC + r"fusion_layers\.(\d+)\.layer_norm_v\.", r"model.encoder.layers.\1.fusion_layer.layer_norm_vision."),
    (_ENC + r"fusion_layers\.(\d+)\.layer_norm_l\.", r"model.encoder.layers.\1.fusion_layer.layer_norm_text."),
    (_ENC + r"fusion_layers\.(\d+)\.attn\.(out_|values_)?v_proj\.",
     r"model.encoder.layers.\1.fusion_layer.attn.\2vision_proj."),
    (_ENC + r"fusion_layers\.(\d+)\.attn\.(out_|values_)?l_proj\.",
     r"model.encoder.layers.\1.fusion_layer.attn.\2text_proj."),
    # decoder
    (_DEC + r"layers\.(\d+)\.cross_attn\.", r"model.decoder.layers.\1.encoder_attn."),
    (_DEC + r"layers\.(\d+)\.norm1\.", r"model.decoder.layers.\1.encoder_attn_layer_norm."),
    (_DEC + r"layers\.(\d+)\.ca_text\.in_proj_(weight|bias)$", r"model.decoder.layers.\1.encoder_attn_text.{qkv}.\2"),
    (_DEC + r"layers\.(\d+)\.ca_text\.out_proj\.", r"model.decoder.layers.\1.encoder_attn_text.out_proj."),
    (_DEC + r"layers\.(\d+)\.catext_norm\.", r"model.decoder.layers.\1.encoder_attn_text_layer_norm."),
    (_DEC + r"layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$", r"model.decoder.layers.\1.self_attn.{qkv}.\2"),
    (_DEC + r"layers\.(\d+)\.self_attn\.out_proj\.", r"model.decoder.layers.\1.self_attn.out_proj."),
    (_DEC + r"layers\.(\d+)\.norm2\.", r"model.decoder.layers.\1.self_attn_layer_norm."),
    (_DEC + r"layers\.(\d+)\.linear(\d)\.", r"model.decoder.layers.\1.fc\2."),
    (_DEC + r"layers\.(\d+)\.norm3\.", r"model.decoder.layers.\1.final_layer_norm."),
    (_DEC + r"norm\.", "model.decoder.layer_norm."),
    (_DEC + r"ref_point_head\.", "model.decoder.reference_points_head."),
    (_DEC + r"bbox_embed\.", "model.decoder.bbox_embed."),
    (r"^bbox_embed\.", "bbox_embed."),
]

#: Swin variants of the original configs' ``backbone`` names: embed dim, depths, heads, window, pretrain size.
SWIN_BACKBONES = {"swin_T_224_1k": (96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 224),
                  "swin_B_224_22k": (128, [2, 2, 18, 2], [4, 8, 16, 32], 7, 224),
                  "swin_B_384_22k": (128, [2, 2, 18, 2], [4, 8, 16, 32], 12, 384)}
#: The literal values of the release's GroundingDINO_SwinT_OGC.py that decide the architecture.
SWINT_OGC = dict(backbone="swin_T_224_1k", return_interm_indices=[1, 2, 3], enc_layers=6, dec_layers=6,
                 dim_feedforward=2048, hidden_dim=256, nheads=8, num_queries=900, num_feature_levels=4, enc_n_points=4,
                 dec_n_points=4, two_stage_type="standard", two_stage_bbox_embed_share=False,
                 dec_pred_bbox_embed_share=True, embed_init_tgt=True, query_dim=4, max_text_len=256,
                 pe_temperatureH=20, transformer_activation="relu")
BUILTIN_CONFIGS = {"GroundingDINO_SwinT_OGC.py (built-in)": SWINT_OGC,
                   "GroundingDINO_SwinB_cfg.py (built-in)": dict(SWINT_OGC, backbone="swin_B_384_22k")}
BUILTIN_GDINO_CONFIG = next(iter(BUILTIN_CONFIGS))


def parse_literal_config(path: Path) -> dict:
    """A GroundingDINO ``*.py`` / ``*.cfg.py`` config (``name = literal`` lines) or a JSON config, read WITHOUT
    executing it (groundingdino's own SLConfig runs the file as Python). A malformed file is named with the fix."""
    path = Path(path)
    fix = f"fix or delete {path} (the built-in configs need no file)"
    try:
        text = path.read_text(encoding="utf-8")
        tree = None if path.suffix == ".json" else ast.parse(text, filename=str(path))
        config = json.loads(text) if tree is None else {}
    except (SyntaxError, ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise VMDiffInputError(f"grounding-dino: the config {path.name} is malformed ({e}); {fix}") from e
    if not isinstance(config, dict):
        raise VMDiffInputError(f"grounding-dino: the config {path.name} is not a JSON object; {fix}")
    for node in tree.body if tree is not None else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                config[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError as e:
                raise VMDiffInputError(f"grounding-dino: {path.name}: {node.targets[0].id} is not a literal; "
                                       f"{fix}") from e
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # docstrings only
            raise VMDiffInputError(f"grounding-dino: {path.name} line {node.lineno}: only `name = value` lines "
                                   f"are read from a config; {fix}")
    return config


def grounding_dino_configs() -> list[str]:
    return list(BUILTIN_CONFIGS) + list_files(KIND, CONFIG_EXTENSIONS)  # not a Hugging Face folder's config files


def original_config(name: str) -> dict:
    """The architecture values of a built-in or file config (a file's missing values are SwinT-OGC's)."""
    if name in BUILTIN_CONFIGS:
        return dict(BUILTIN_CONFIGS[name])
    inner = pick_the_folder_error(KIND, name)
    if inner is not None:  # a Hugging Face folder's config.json: the folder goes into checkpoint, config unused
        raise inner
    path = folder_paths.get_full_path(KIND, name)
    if path is None:
        raise VMDiffInputError(missing_file_message(KIND, name, "config"))
    return dict(SWINT_OGC, **parse_literal_config(Path(path)))


def hf_config(config: dict, text_config, source: str):
    """The GroundingDinoConfig of an original config dict (``source`` names the config in errors)."""
    from transformers import GroundingDinoConfig, SwinConfig

    c = config
    if c["backbone"] not in SWIN_BACKBONES:
        raise VMDiffInputError(f"grounding-dino: {source}: backbone {c['backbone']!r} is not supported; expected one "
                               f"of {sorted(SWIN_BACKBONES)}")
    if c["two_stage_type"] != "standard":
        raise VMDiffInputError(f"grounding-dino: {source}: two_stage_type {c['two_stage_type']!r} is not supported "
                               f"(the released models use 'standard')")
    embed, depths, heads, window, size = SWIN_BACKBONES[c["backbone"]]
    backbone = SwinConfig(embed_dim=embed, depths=depths, num_heads=heads, window_size=window, image_size=size,
                          out_indices=[i + 1 for i in c["return_interm_indices"]])
    try:
        return GroundingDinoConfig(
            backbone_config=backbone, text_config=text_config, num_queries=c["num_queries"],
            encoder_layers=c["enc_layers"], decoder_layers=c["dec_layers"], encoder_ffn_dim=c["dim_feedforward"],
            decoder_ffn_dim=c["dim_feedforward"], d_model=c["hidden_dim"], encoder_attention_heads=c["nheads"],
            decoder_attention_heads=c["nheads"], num_feature_levels=c["num_feature_levels"],
            encoder_n_points=c["enc_n_points"], decoder_n_points=c["dec_n_points"], max_text_len=c["max_text_len"],
            query_dim=c["query_dim"], embedding_init_target=c["embed_init_tgt"],
            decoder_bbox_embed_share=c["dec_pred_bbox_embed_share"],
            two_stage_bbox_embed_share=c["two_stage_bbox_embed_share"],
            positional_embedding_temperature=c["pe_temperatureH"], activation_function=c["transformer_activation"],
            dropout=0.0, fusion_droppath=0.0)
    except (TypeError, ValueError) as e:
        raise VMDiffInputError(f"grounding-dino: {source}: a value does not fit GroundingDINO ({e})") from e


#: bert-base-uncased's ids of [CLS], [SEP], "." and "?": transformers' GroundingDINO splits the caption at these ids
SPECIAL_TOKEN_IDS = [101, 102, 1012, 1029]


def check_tokenizer(tokenizer, source: Path) -> None:
    ids = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", ".", "?"])
    if ids != SPECIAL_TOKEN_IDS:
        raise VMDiffInputError(f"grounding-dino: the tokenizer of {source} is not bert-base-uncased's ([CLS], [SEP], "
                               f"'.', '?' have ids {ids}; GroundingDINO needs {SPECIAL_TOKEN_IDS}). Use the "
                               f"bert-base-uncased folder. Expected {SCORE_FOLDERS['bert-base-uncased'][1]}.")


class GroundingDinoDetector(ScorerModel):
    """Open-set detection: the most confident box for a caption (the reference crops to this box, no SAM mask)."""

    kind = "detector"

    @torch.inference_mode()
    def detect(self, images: torch.Tensor, caption: str, box_threshold: float = 0.25, nms_iou: float = 0.8,
               short_side: int = 800) -> list[tuple[torch.Tensor | None, float]]:
        """images (B, 3, H, W) in [0, 1], one size → per image (pixel xyxy box on the REAL size, confidence)."""
        model = self.ready()
        h, w = images.shape[-2:]
        x = torch.nn.functional.interpolate(images.float(), size=score_ops.grounding_resize_shape(h, w, short_side),
                                            mode="bilinear", align_corners=False, antialias=True)
        x = score_ops.normalise_pixels(x, score_ops.IMAGENET_MEAN, score_ops.IMAGENET_STD)
        caption = caption.lower().strip()
        caption = caption if caption.endswith(".") else caption + "."
        text = self.processor.tokenizer([caption] * len(x), return_tensors="pt")
        self.count(len(x))
        out = model(pixel_values=x.to(self.device), **{k: v.to(self.device) for k, v in text.items()})
        found = self.processor.post_process_grounded_object_detection(
            out, text["input_ids"], threshold=box_threshold, text_threshold=box_threshold,
            target_sizes=[(h, w)] * len(x))
        results = []
        for f in found:
            picked = score_ops.select_box(f["scores"].float().cpu(), f["boxes"].float().cpu(), box_threshold, nms_iou)
            results.append(picked if picked is not None else (None, 0.0))
        return results


def model_choices() -> list[str]:
    """The checkpoint widget: Hugging Face folders and original release files in models/grounding-dino."""
    return sorted(list_hf_folders(KIND)) + list_weight_files(KIND)


def check_choice(checkpoint: str, config_name: str, bert_name: str | None) -> None:
    """The loader's cheap checks (validation): the checkpoint exists; a release file also needs its config and BERT."""
    _, folder = resolve_model(KIND, checkpoint)
    if not folder:
        original_config(config_name)
        resolve_bert(bert_name)


def resolve_bert(name: str | None) -> Path:
    if not name:
        raise VMDiffInputError(f"bert: an original GroundingDINO file needs its text encoder: "
                               f"{missing_file_message('bert-base-uncased', None, 'folder')}")
    folder = resolve_hf_folder("bert-base-uncased", name)
    if not (folder / "vocab.txt").is_file() and not (folder / "tokenizer.json").is_file():
        raise VMDiffInputError(f"bert-base-uncased: {folder} has no vocab.txt / tokenizer.json. "
                               f"Expected {SCORE_FOLDERS['bert-base-uncased'][1]}.")
    return folder


def load_grounding_dino(config_name: str, checkpoint: str, bert_name: str | None) -> GroundingDinoDetector:
    """A Hugging Face folder (``config_name`` and ``bert_name`` unused) or an original release file."""
    from transformers import AutoTokenizer, BertConfig, GroundingDinoForObjectDetection, GroundingDinoProcessor

    path, folder = resolve_model(KIND, checkpoint)
    if folder:
        check_hf_weights(KIND, path)
        processor = GroundingDinoProcessor.from_pretrained(str(path), local_files_only=True)
        check_tokenizer(processor.tokenizer, path)
        model = from_pretrained(GroundingDinoForObjectDetection, KIND, path)
        info = {"format": "Hugging Face folder", "file": str(path)}
    else:
        config = original_config(config_name)  # cheap checks first: a bad config or file costs no model build
        bert_folder = resolve_bert(bert_name)
        sd = load_weights_safely(path, KIND)
        if not any(k.startswith("bert.") for k in sd):  # BERT weights not in the checkpoint: the folder's
            check_hf_weights("bert-base-uncased", bert_folder)
            sd.update({f"bert.{k}": v for k, v in load_bert_weights(bert_folder).items()})
        text_config = BertConfig.from_pretrained(str(bert_folder), local_files_only=True)
        hf = hf_config(config, text_config, config_name)
        tokenizer = AutoTokenizer.from_pretrained(str(bert_folder), local_files_only=True)
        check_tokenizer(tokenizer, bert_folder)
        from transformers import GroundingDinoImageProcessor

        processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer)
        model = from_pretrained(GroundingDinoForObjectDetection, KIND, path, config=hf,
                                state_dict=apply_key_map(sd, ORIGINAL_TO_HF))
        info = {"format": "original release", "config": config_name, "file": str(path), "bert": str(bert_folder),
                "backbone": config["backbone"]}
    return GroundingDinoDetector(model, f"GroundingDINO ({path.name})", info, processor=processor)


def load_bert_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A BERT folder's own weights, key names without a ``bert.`` prefix."""
    weights = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
    sd = load_weights_safely(weights[0], "bert-base-uncased")
    return {k.removeprefix("bert."): v for k, v in sd.items() if not k.startswith("cls.")}
