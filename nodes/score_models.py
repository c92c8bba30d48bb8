"""The Similarity Score's models (DINOv2, OpenCLIP, GroundingDINO, SAM): where their files live, how they are
loaded safely from local files only, and how they run under ComfyUI's model management.

Model folders (registered at import, MERGED with anything extra_model_paths.yaml already declared):

* ``models/grounding-dino`` and ``models/sams`` — the names comfyui_segment_anything (storyicon) and the other
  Grounded-SAM packs use, so files users already have are found: ``groundingdino_swint_ogc.pth`` (+ optionally its
  ``GroundingDINO_SwinT_OGC.cfg.py``) and ``sam_vit_h_4b8939.pth`` / ``sam_vit_l_0b3195.pth`` /
  ``sam_vit_b_01ec64.pth``.
* ``models/bert-base-uncased`` — GroundingDINO's text encoder as a Hugging Face folder (same packs' convention);
  the folder itself or sub-folders of it, each with ``config.json``, weights and ``vocab.txt``.
* ``models/dinov2`` — Hugging Face DINOv2 folders (``dinov2-base/config.json`` + ``model.safetensors``), named like
  the Hugging Face repositories, as DINOv2-based packs keep them.
* ``models/open_clip`` — OpenCLIP checkpoints (``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin`` of
  laion/CLIP-ViT-bigG-14-laion2B-39B-b160k, any file name) and optional extra model configs (``*.json``).
  Not ``models/clip``: that is ComfyUI's text-encoder folder and a 10 GB two-tower OpenCLIP file would show up in
  CLIPLoader.

Nothing is downloaded, no Hugging Face hub is asked. Weights are read from safetensors, or from pickled
checkpoints with ``torch.load(weights_only=True)``, which refuses any pickled Python object (no code runs).
Each model is wrapped in a ``ModelPatcher`` and loaded with ``load_model_gpu`` right before it runs, so ComfyUI can
offload it when FLUX needs the memory.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import pickle
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch

import comfy.model_management
import comfy.model_patcher
import folder_paths

from ..vmdiff_ops import score as score_ops
from .common import VMDiffInputError

log = logging.getLogger("vmdiff.score")

WEIGHT_EXTENSIONS = {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}
CONFIG_EXTENSIONS = {".py", ".json"}

#: folder name -> (extensions listed, what belongs there and where to get it)
SCORE_FOLDERS = {
    "dinov2": (set(), "a Hugging Face DINOv2 folder such as dinov2-base/ holding config.json and model.safetensors "
                      "(346 MB; https://huggingface.co/facebook/dinov2-base)"),
    "open_clip": (WEIGHT_EXTENSIONS | {".json"},
                  "an OpenCLIP checkpoint such as open_clip_model.safetensors or open_clip_pytorch_model.bin of "
                  "ViT-bigG-14 laion2b_s39b_b160k (10.2 GB; https://huggingface.co/laion/"
                  "CLIP-ViT-bigG-14-laion2B-39B-b160k), any file name"),
    "grounding-dino": (WEIGHT_EXTENSIONS | CONFIG_EXTENSIONS,
                       "groundingdino_swint_ogc.pth (694 MB; https://huggingface.co/ShilongLiu/GroundingDINO); the "
                       "SwinT-OGC config is built in"),
    "bert-base-uncased": (set(), "the Hugging Face bert-base-uncased folder: config.json, model.safetensors, "
                                 "vocab.txt, tokenizer_config.json (440 MB; https://huggingface.co/google-bert/"
                                 "bert-base-uncased)"),
    "sams": (WEIGHT_EXTENSIONS, "sam_vit_h_4b8939.pth (2.56 GB), sam_vit_l_0b3195.pth (1.25 GB) or "
                                "sam_vit_b_01ec64.pth (375 MB) (https://github.com/facebookresearch/segment-anything"
                                "#model-checkpoints)"),
}


def register_score_folders() -> None:
    """Register SCORE_FOLDERS with folder_paths: the default ``models/<name>`` first, then every path already
    declared (extra_model_paths.yaml, other packs), extensions merged."""
    for name, (extensions, _) in SCORE_FOLDERS.items():
        paths, known_ext = folder_paths.folder_names_and_paths.get(name, ([], set()))
        default = os.path.join(folder_paths.models_dir, name)
        merged = [default] + [p for p in paths if p != default]
        folder_paths.folder_names_and_paths[name] = (merged, set(known_ext) | extensions)


register_score_folders()


def missing_file_message(kind: str, name: str | None, what: str = "file") -> str:
    """The error for a missing model: the folder(s) searched, what is expected there, where to get it."""
    paths = ", ".join(folder_paths.get_folder_paths(kind)) or f"models/{kind}"
    given = f"{what} {name!r} was not found" if name else f"no {what} found"
    return f"{kind}: {given} in {paths}. Expected {SCORE_FOLDERS[kind][1]}."


def list_weight_files(kind: str) -> list[str]:
    return [f for f in folder_paths.get_filename_list(kind) if Path(f).suffix.lower() in WEIGHT_EXTENSIONS]


def list_hf_folders(kind: str) -> dict[str, Path]:
    """Hugging Face model folders of a kind: each registered path that holds config.json itself (named by its
    folder name), and each direct sub-folder that does."""
    found: dict[str, Path] = {}
    for base in map(Path, folder_paths.get_folder_paths(kind)):
        candidates = [base] + (sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else [])
        for folder in candidates:
            if (folder / "config.json").is_file():
                found.setdefault(folder.name, folder)
    return found


def resolve_weight_file(kind: str, name: str) -> Path:
    path = folder_paths.get_full_path(kind, name) if name else None
    if path is None or not os.path.isfile(path):
        raise VMDiffInputError(missing_file_message(kind, name))
    return Path(path)


def resolve_hf_folder(kind: str, name: str) -> Path:
    folder = list_hf_folders(kind).get(name)
    if folder is None:
        raise VMDiffInputError(missing_file_message(kind, name, "folder"))
    return folder


# --------------------------------------------------------------------------------------------------
# safe weights

def check_safetensors_file(path: Path, kind: str) -> None:
    """Read a .safetensors file's header (cheap): a corrupt or cut-off file is named here, with the fix, instead of
    failing later inside a library with a bare parse error."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as e:
        raise VMDiffInputError(f"{kind}: {Path(path).name} is not a valid safetensors file ({e}): it is corrupt or "
                               f"incomplete, download it again. Expected {SCORE_FOLDERS[kind][1]}.") from e


def load_weights_safely(path: Path, kind: str = "") -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file, or from a pickled checkpoint read with ``weights_only=True``
    (tensors and plain containers only: a pickled Python object is refused before anything runs). Unwraps the
    common ``{"model": sd}`` / ``{"state_dict": sd}`` wrappers and a ``module.`` prefix."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any parse error means a bad file
            raise VMDiffInputError(f"{kind}: {path.name} is not a valid safetensors file ({e})") from e
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise VMDiffInputError(
                f"{kind}: refused to load {path.name}: the checkpoint contains pickled Python objects, not only "
                f"tensors, and loading it could run arbitrary code. Use the original release file or a "
                f".safetensors conversion. ({str(e).splitlines()[0]})") from e
        except Exception as e:  # noqa: BLE001 - truncated / not a torch file
            raise VMDiffInputError(f"{kind}: could not read {path.name} as a PyTorch checkpoint ({e})") from e
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise VMDiffInputError(f"{kind}: {path.name} does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_into(module: torch.nn.Module, sd: dict, kind: str, path: Path, ignore_missing=()) -> None:
    """Copy ``sd`` into ``module``; a missing tensor or a shape mismatch means the wrong file for this model."""
    try:
        missing, unexpected = module.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # size mismatch
        raise VMDiffInputError(f"{kind}: {path.name} does not fit this model: {str(e)[:600]}. "
                               f"Expected {SCORE_FOLDERS[kind][1]}.") from e
    missing = [k for k in missing if not k.startswith(tuple(ignore_missing))]
    if missing:
        raise VMDiffInputError(f"{kind}: {path.name} is not a checkpoint for this model ({len(missing)} tensors "
                               f"missing, e.g. {missing[:3]}). Expected {SCORE_FOLDERS[kind][1]}.")
    if unexpected:
        log.info("%s: %d unused tensors in %s (e.g. %s)", kind, len(unexpected), path.name, unexpected[:3])


# --------------------------------------------------------------------------------------------------
# ComfyUI model management

class ManagedModule(torch.nn.Module):
    """Holds a library model for a ModelPatcher (which sets ``.device`` on what it manages: Hugging Face models have
    a read-only ``device`` property, so the patcher gets this plain holder instead)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner.eval().requires_grad_(False)
        self.device = None


class ScorerModel:
    """A scoring model under ComfyUI's model management, with call counters (to check encode-once)."""

    kind = "model"

    def __init__(self, module: torch.nn.Module | None, name: str, info: dict | None = None, patcher=None):
        """``patcher``: an existing ModelPatcher to run under (then ``module`` is not used)."""
        self.patcher = patcher if patcher is not None else comfy.model_patcher.ModelPatcher(
            ManagedModule(module), load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device())
        self.name = name
        self.info = info or {}
        self.calls = 0
        self.images = 0

    def ready(self) -> torch.nn.Module:
        """Load to the compute device (evicting others if needed) and return the library model. Called before every
        pass, so Cancel stops scoring between model passes (library models have no comfy ops that check it)."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        comfy.model_management.load_model_gpu(self.patcher)
        return self.patcher.model.inner

    @property
    def device(self) -> torch.device:
        return self.patcher.load_device

    def count(self, n_images: int) -> None:
        self.calls += 1
        self.images += n_images

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def prepare_views(views: list[torch.Tensor], size: int, mode: str, short_side: int | None = None) -> torch.Tensor:
    """Crops of any sizes, each (3, h, w) in [0, 1] → one (B, 3, size, size) batch: ``squash`` (the reference:
    size × size, no crop) or ``center_crop`` (the libraries' own preprocessing: shorter side to ``short_side``,
    centre crop to size)."""
    if mode == "squash":
        resized = [score_ops.squash_resize(v[None], size) for v in views]
    elif mode == "center_crop":
        resized = [score_ops.center_crop_resize(v[None], size, short_side or size) for v in views]
    else:
        raise VMDiffInputError(f"resize: unknown mode {mode!r}; expected squash or center_crop")
    return torch.cat(resized)


# --------------------------------------------------------------------------------------------------
# DINOv2 (transformers) or a ComfyUI CLIP_VISION DINOv2

class DinoEncoder(ScorerModel):
    """DINOv2 → the mean of all last_hidden_state tokens (spec §5), 224² ImageNet-normalised input."""

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
    """transformers' own loader (it maps the released key names onto the current modules), local files only; a
    pickled pytorch_model.bin is first checked with weights_only=True (transformers does the same on torch ≥ 2.6)."""
    from transformers import Dinov2Model

    folder = resolve_hf_folder("dinov2", folder_name)
    weights = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
    if not weights:
        raise VMDiffInputError(f"dinov2: {folder} has config.json but no model.safetensors or pytorch_model.bin. "
                               f"Expected {SCORE_FOLDERS['dinov2'][1]}.")
    if weights[0].suffix != ".safetensors":
        load_weights_safely(weights[0], "dinov2")
    else:
        check_safetensors_file(weights[0], "dinov2")
    try:
        model, loading = Dinov2Model.from_pretrained(str(folder), local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise VMDiffInputError(f"dinov2: could not load {folder} as DINOv2 ({str(e)[:500]}). "
                               f"Expected {SCORE_FOLDERS['dinov2'][1]}.") from e
    missing = [k for k in loading.get("missing_keys", []) if "mask_token" not in k]
    if missing or loading.get("mismatched_keys"):
        raise VMDiffInputError(f"dinov2: {weights[0]} does not fit its config.json (missing {missing[:3]}, "
                               f"mismatched {list(loading.get('mismatched_keys', []))[:3]}). "
                               f"Expected {SCORE_FOLDERS['dinov2'][1]}.")
    config = model.config
    info = {"hidden_size": config.hidden_size, "layers": config.num_hidden_layers, "file": str(weights[0])}
    return DinoEncoder(model.float(), folder_name, info)


# --------------------------------------------------------------------------------------------------
# OpenCLIP

def package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (ComfyUI start-up stays fast)."""
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def open_clip_model_names() -> list[str]:
    """OpenCLIP's built-in model configs plus the ``*.json`` configs in models/open_clip."""
    names = set()
    pkg = package_dir("open_clip")
    if pkg is not None:
        names |= {p.stem for p in (pkg / "model_configs").glob("*.json")}
    names |= {Path(f).stem for f in folder_paths.get_filename_list("open_clip") if f.endswith(".json")}
    return sorted(names | {"ViT-bigG-14"})


class OpenClipEncoder(ScorerModel):
    """OpenCLIP image and text towers; T = cos(image embedding, text embedding)."""

    kind = "clip"

    def __init__(self, module, name, info, tokenizer):
        super().__init__(module, name, info)
        self.tokenizer = tokenizer
        size = module.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.text_calls = 0

    def encode_images(self, views: list[torch.Tensor], resize: str = "squash") -> torch.Tensor:
        model = self.ready()
        x = prepare_views(views, self.image_size, resize)
        x = score_ops.normalise_pixels(x, score_ops.OPENAI_CLIP_MEAN, score_ops.OPENAI_CLIP_STD)
        self.count(len(x))
        with torch.inference_mode():
            return model.encode_image(x.to(self.device)).float().cpu()

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        model = self.ready()
        self.text_calls += 1
        with torch.inference_mode():
            return model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu()


def load_open_clip(model_name: str, checkpoint: str) -> OpenClipEncoder:
    try:
        import open_clip
    except ImportError as e:
        raise VMDiffInputError("open_clip: the package is not installed; pip install open-clip-torch") from e
    path = resolve_weight_file("open_clip", checkpoint)
    if path.suffix.lower() == ".safetensors":
        check_safetensors_file(path, "open_clip")
    for base in map(Path, folder_paths.get_folder_paths("open_clip")):
        if (base / f"{model_name}.json").is_file():
            open_clip.add_model_config(base / f"{model_name}.json")
    if model_name not in open_clip.list_models():
        raise VMDiffInputError(f"open_clip: unknown model {model_name!r}; put {model_name}.json in "
                               f"{folder_paths.get_folder_paths('open_clip')[0]} or pick a built-in OpenCLIP model")
    try:  # open_clip reads safetensors, or torch.load(weights_only=True): pickled objects are refused
        model = open_clip.create_model(model_name, pretrained=str(path), weights_only=True, device="cpu",
                                       require_pretrained=True)
    except pickle.UnpicklingError as e:
        raise VMDiffInputError(f"open_clip: refused to load {path.name}: the checkpoint contains pickled Python "
                               f"objects, not only tensors, and loading it could run arbitrary code") from e
    except (RuntimeError, AssertionError, KeyError, ValueError) as e:  # open_clip asserts on some mismatches
        raise VMDiffInputError(f"open_clip: {path.name} is not a {model_name} checkpoint ({str(e)[:500]}). "
                               f"Expected {SCORE_FOLDERS['open_clip'][1]}.") from e
    info = {"model": model_name, "file": str(path)}
    return OpenClipEncoder(model, f"{model_name} ({path.name})", info, open_clip.get_tokenizer(model_name))


# --------------------------------------------------------------------------------------------------
# GroundingDINO (groundingdino-py)

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


# --------------------------------------------------------------------------------------------------
# SAM (segment-anything)

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
