"""OpenCLIP for the text terms T1, T2 (image and text towers)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

import folder_paths

from ...vmdiff_ops import score as score_ops
from ..errors import VMDiffInputError
from ..optional import package_dir, require
from .files import SCORE_FOLDERS, explain_load_error, list_files, resolve_weight_file, sniff_file
from .scorer import ScorerModel, prepare_views


def open_clip_model_names() -> list[str]:
    """OpenCLIP's built-in model configs plus the ``*.json`` configs in models/open_clip."""
    names = set()
    pkg = package_dir("open_clip")
    if pkg is not None:
        names |= {p.stem for p in (pkg / "model_configs").glob("*.json")}
    names |= {Path(f).stem for f in list_files("open_clip", {".json"})}  # not a repository folder's config files
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

    def text_token_count(self, text: str) -> tuple[int, int]:
        """(content tokens OpenCLIP's tokenizer makes of ``text``, content tokens its window holds): the tokenizer
        silently cuts a text at ``context_length`` (77 with the start and end tokens)."""
        window = int(getattr(self.tokenizer, "context_length", 77)) - 2
        if callable(getattr(self.tokenizer, "encode", None)):  # SimpleTokenizer (the CLIP BPE)
            return len(self.tokenizer.encode(text)), window
        ids = self.tokenizer([text], context_length=len(text.encode("utf-8")) + window + 2)  # room for every byte
        return int((ids != 0).sum()) - 2, window

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        model = self.ready()
        self.text_calls += 1
        with torch.inference_mode():
            return model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu()


def register_config(open_clip, model_name: str) -> bool:
    """Register models/open_clip/<model_name>.json with OpenCLIP after checking it (a malformed file is named with
    the fix and never registered). True if a file config was registered."""
    for base in map(Path, folder_paths.get_folder_paths("open_clip")):
        path = base / f"{model_name}.json"
        if not path.is_file():
            continue
        sniff_file(path, "open_clip")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise VMDiffInputError(f"open_clip: the model config {path} is malformed ({e}); fix or delete it") from None
        towers = ("vision_cfg", "text_cfg")
        if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in towers) \
                or not isinstance(config.get("embed_dim"), int):
            raise VMDiffInputError(f"open_clip: the model config {path} is not an OpenCLIP model config (it needs "
                                   f"embed_dim, vision_cfg and text_cfg); fix or delete it")
        open_clip.add_model_config(path)
        return True
    return False


def load_open_clip(model_name: str, checkpoint: str) -> OpenClipEncoder:
    open_clip = require("open_clip", "VMDiff Load OpenCLIP")
    path = resolve_weight_file("open_clip", checkpoint)  # looked at before loading
    from_file = register_config(open_clip, model_name)
    if model_name not in open_clip.list_models():
        raise VMDiffInputError(f"open_clip: unknown model {model_name!r}; put {model_name}.json in "
                               f"{folder_paths.get_folder_paths('open_clip')[0]} or pick a built-in OpenCLIP model")
    try:  # open_clip reads safetensors, or torch.load(weights_only=True): pickled objects are refused
        model = open_clip.create_model(model_name, pretrained=str(path), weights_only=True, device="cpu",
                                       require_pretrained=True)
    except Exception as e:  # noqa: BLE001 - open_clip raises many kinds on a wrong file
        if from_file:  # a config that cannot build this file is not left registered for later loads
            getattr(open_clip.factory, "_MODEL_CONFIGS", {}).pop(model_name, None)
        if isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e):
            raise explain_load_error(e, path, "open_clip") from None
        raise VMDiffInputError(f"open_clip: {path.name} is not a {model_name} checkpoint "
                               f"({str(e).splitlines()[0][:400] if str(e) else type(e).__name__}). "
                               f"Expected {SCORE_FOLDERS['open_clip'][1]}.") from None
    info = {"model": model_name, "file": str(path)}
    return OpenClipEncoder(model, f"{model_name} ({path.name})", info, open_clip.get_tokenizer(model_name))
