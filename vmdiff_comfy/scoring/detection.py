"""GroundingDINO (groundingdino-py): the object's box for the isolation step (spec §5)."""
from __future__ import annotations

import ast
import json
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch

import folder_paths

from ...vmdiff_ops import score as score_ops
from ..errors import VMDiffInputError
from .files import (CONFIG_EXTENSIONS, SCORE_FOLDERS, load_into, load_weights_safely, missing_file_message,
                    package_dir, resolve_hf_folder, resolve_weight_file)
from .scorer import ScorerModel


def parse_literal_config(path: Path) -> dict:
    """A GroundingDINO ``*.py`` / ``*.cfg.py`` config (``name = literal`` lines) or a JSON config, read WITHOUT
    executing it (groundingdino's own SLConfig runs the file as Python)."""
    text = Path(path).read_text()
    if path.suffix == ".json":
        return json.loads(text)
    config = {}
    for node in ast.parse(text, filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                config[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError as e:
                raise VMDiffInputError(f"grounding-dino: {path.name}: {node.targets[0].id} is not a literal") from e
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # docstrings only
            raise VMDiffInputError(f"grounding-dino: {path.name} line {node.lineno}: only `name = value` lines "
                                   f"are read from a config")
    return config


BUILTIN_GDINO_CONFIG = "GroundingDINO_SwinT_OGC.py (built-in)"


def grounding_dino_configs() -> list[str]:
    names = [f for f in folder_paths.get_filename_list("grounding-dino") if Path(f).suffix in CONFIG_EXTENSIONS]
    return [BUILTIN_GDINO_CONFIG] + names


def grounding_dino_config_path(name: str) -> Path:
    if name == BUILTIN_GDINO_CONFIG:
        pkg = package_dir("groundingdino")
        if pkg is None:
            raise VMDiffInputError("grounding-dino: the groundingdino package is not installed; "
                                   "pip install groundingdino-py")
        return pkg / "config" / "GroundingDINO_SwinT_OGC.py"
    path = folder_paths.get_full_path("grounding-dino", name)
    if path is None:
        raise VMDiffInputError(missing_file_message("grounding-dino", name, "config"))
    return Path(path)


class GroundingBertCompat(torch.nn.Module):
    """GroundingDINO's BERT wrapper for transformers 4.x and 5.x (groundingdino-py's BertModelWarper calls
    ``get_extended_attention_mask``/``get_head_mask``, which transformers 5 removed). Same sub-modules, hence the
    same ``bert.*`` checkpoint keys; the (B, N, N) sub-sentence mask becomes an additive attention mask."""

    def __init__(self, bert_model):
        super().__init__()
        self.config = bert_model.config
        self.embeddings = bert_model.embeddings
        self.encoder = bert_model.encoder
        self.pooler = bert_model.pooler

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, **_):
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask[:, None] if attention_mask.ndim == 3 else attention_mask[:, None, None]
        additive = (1.0 - mask.to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        hidden = self.encoder(hidden, attention_mask=additive)[0]
        return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=hidden, pooler_output=self.pooler(hidden))


@contextmanager
def _compatible_bert_wrapper():
    import groundingdino.models.GroundingDINO.groundingdino as gd_module

    original = gd_module.BertModelWarper
    gd_module.BertModelWarper = GroundingBertCompat
    try:
        yield
    finally:
        gd_module.BertModelWarper = original


class GroundingDinoDetector(ScorerModel):
    """Open-set detection: the most confident box for a caption (spec §5 "Grounded-SAM is only a box")."""

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
        self.count(len(x))
        out = model(x.to(self.device), captions=[caption] * len(x))
        scores = out["pred_logits"].sigmoid().max(dim=-1).values.float().cpu()  # (B, queries)
        boxes = out["pred_boxes"].float().cpu()  # (B, queries, 4) normalised cxcywh
        results = []
        for s, b in zip(scores, boxes):
            picked = score_ops.select_box(s, score_ops.boxes_to_pixels(b, w, h), box_threshold, nms_iou)
            results.append(picked if picked is not None else (None, 0.0))
        return results


def build_grounding_dino(config: dict, bert_folder: Path) -> torch.nn.Module:
    """groundingdino-py's model for a config dict, its text encoder built from a local BERT folder (never the hub),
    for inference (no gradient checkpointing). Weights: BERT's from the folder, everything else random."""
    try:
        from groundingdino.models import build_model
    except ImportError as e:
        raise VMDiffInputError("grounding-dino: the groundingdino package is not installed; "
                               "pip install groundingdino-py") from e
    config = dict(config, text_encoder_type=str(bert_folder), use_checkpoint=False, use_transformer_ckpt=False,
                  device="cpu")
    with _compatible_bert_wrapper():
        return build_model(SimpleNamespace(**config)).eval()


def load_grounding_dino(config_name: str, checkpoint: str, bert_name: str) -> GroundingDinoDetector:
    path = resolve_weight_file("grounding-dino", checkpoint)
    bert_folder = resolve_hf_folder("bert-base-uncased", bert_name)
    if not (bert_folder / "vocab.txt").is_file() and not (bert_folder / "tokenizer.json").is_file():
        raise VMDiffInputError(f"bert-base-uncased: {bert_folder} has no vocab.txt / tokenizer.json. "
                               f"Expected {SCORE_FOLDERS['bert-base-uncased'][1]}.")
    config = parse_literal_config(grounding_dino_config_path(config_name))
    sd = load_weights_safely(path, "grounding-dino")  # before building: a refused file costs nothing
    model = build_grounding_dino(config, bert_folder)
    # bert.* may legitimately be absent (it then comes from the bert-base-uncased folder)
    load_into(model, sd, "grounding-dino", path, ignore_missing=("bert.",))
    info = {"config": config_name, "file": str(path), "bert": str(bert_folder), "backbone": config.get("backbone")}
    return GroundingDinoDetector(model, f"GroundingDINO ({path.name})", info)

