"""Where the Similarity Score's model files live and how they are read safely from local files only.

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
"""
from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import re
from pathlib import Path

import torch

import folder_paths

from ..errors import VMDiffInputError

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



def package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (ComfyUI start-up stays fast)."""
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def apply_key_map(sd: dict[str, torch.Tensor], key_map: list[tuple[str, str | None]]) -> dict[str, torch.Tensor]:
    """Rename a state dict by ``(regex, replacement)`` rules, the first matching rule wins: a replacement of None
    drops the tensor (a buffer the target model recomputes), one containing ``{qkv}`` splits a fused
    query/key/value tensor along dim 0 into ``query``, ``key`` and ``value``. Keys no rule matches are kept as they
    are (the loader then reports them as unexpected)."""
    out = {}
    for key, value in sd.items():
        for pattern, replacement in key_map:
            if re.search(pattern, key):
                break
        else:
            out[key] = value
            continue
        if replacement is None:
            continue
        new = re.sub(pattern, replacement, key)
        if "{qkv}" in new:
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[new.replace("{qkv}", name)] = part
        else:
            out[new] = value
    return out


def resolve_model(kind: str, name: str) -> tuple[Path, bool]:
    """A model widget value of ``kind``: (path, True) for a Hugging Face folder, (path, False) for a weight file."""
    folder = list_hf_folders(kind).get(name)
    return (folder, True) if folder is not None else (resolve_weight_file(kind, name), False)


HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def check_hf_weights(kind: str, folder: Path) -> Path:
    """The weight file of a Hugging Face folder, checked before transformers reads it (a pickled
    ``pytorch_model.bin`` is read with weights_only=True first)."""
    weights = [folder / n for n in HF_WEIGHT_NAMES if (folder / n).is_file()]
    if not weights:
        raise VMDiffInputError(f"{kind}: {folder} has config.json but no {' or '.join(HF_WEIGHT_NAMES)}. "
                               f"Expected {SCORE_FOLDERS[kind][1]}.")
    if weights[0].suffix == ".safetensors":
        check_safetensors_file(weights[0], kind)
    else:
        load_weights_safely(weights[0], kind)
    return weights[0]


def from_pretrained(cls, kind: str, path: Path, ignore_missing=(), **kwargs):
    """``cls.from_pretrained`` of a local folder (or, with ``config`` and ``state_dict`` in kwargs, of tensors in
    memory) with transformers' own key handling; a tensor missing or of the wrong shape names the file."""
    source = None if "state_dict" in kwargs else str(path)
    try:
        model, loading = cls.from_pretrained(source, local_files_only=True, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise VMDiffInputError(f"{kind}: could not load {path.name} ({str(e)[:500]}). "
                               f"Expected {SCORE_FOLDERS[kind][1]}.") from e
    missing = [k for k in loading.get("missing_keys", []) if not any(s in k for s in ignore_missing)]
    mismatched = list(loading.get("mismatched_keys", []))
    if missing or mismatched:
        raise VMDiffInputError(f"{kind}: {path.name} does not fit this model ({len(missing)} tensors missing, e.g. "
                               f"{sorted(missing)[:3]}; {len(mismatched)} of another shape, e.g. {mismatched[:2]}). "
                               f"Expected {SCORE_FOLDERS[kind][1]}.")
    if loading.get("unexpected_keys"):
        log.info("%s: %d unused tensors in %s (e.g. %s)", kind, len(loading["unexpected_keys"]), path.name,
                 sorted(loading["unexpected_keys"])[:3])
    return model.eval().float()
