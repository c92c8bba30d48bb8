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

import json
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
    """The full path of a weight file of ``kind``, looked at (sniff_file) before anything loads it."""
    path = folder_paths.get_full_path(kind, name) if name else None
    if path is None or not os.path.isfile(path):
        raise VMDiffInputError(missing_file_message(kind, name))
    sniff_file(Path(path), kind)
    return Path(path)


def resolve_hf_folder(kind: str, name: str) -> Path:
    folder = list_hf_folders(kind).get(name)
    if folder is None:
        raise VMDiffInputError(missing_file_message(kind, name, "folder"))
    return folder


# --------------------------------------------------------------------------------------------------
# safe weights

#: Byte sizes of the original release files, to tell a user how much of a file arrived.
RELEASE_SIZES = {"groundingdino_swint_ogc.pth": 693_997_677, "sam_vit_b_01ec64.pth": 375_042_383,
                 "sam_vit_l_0b3195.pth": 1_249_524_607, "sam_vit_h_4b8939.pth": 2_564_550_879}


def _not_a_model(path: Path, kind: str, what: str, expected: int | None = None) -> VMDiffInputError:
    size = path.stat().st_size
    expected = expected or RELEASE_SIZES.get(path.name)
    sizes = f"{size:,} bytes" + (f"; the real file is {expected:,} bytes" if expected else "")
    return VMDiffInputError(f"{kind}: {path.name} in {path.parent} is {what} ({sizes}), not the model file. Download "
                            f"it again (a browser download or `git lfs pull` of the whole file). Expected "
                            f"{SCORE_FOLDERS[kind][1]}.")


def sniff_file(path: Path, kind: str) -> None:
    """Look before loading (cheap: the size and the first bytes): an empty file, a Git LFS pointer, an HTML or JSON
    error page saved in place of the weights, or a cut-off safetensors / zip checkpoint is named here with its size
    and where to get the file, before any library reads it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    text = head.lstrip().lower()
    if size == 0:
        raise _not_a_model(path, kind, "empty")
    if head.startswith(b"version https://git-lfs"):
        expected = re.search(rb"size (\d+)", head)
        raise _not_a_model(path, kind, "a Git LFS pointer (a 3-line text stub; the weights were never fetched)",
                           int(expected.group(1)) if expected else None)
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        raise _not_a_model(path, kind, "an HTML page (an error or login page saved instead of the file)")
    if path.suffix.lower() != ".json" and text.startswith((b"{", b"[")):
        raise _not_a_model(path, kind, "a JSON text (an error message saved instead of the file)")
    if path.suffix.lower() == ".safetensors":
        check_safetensors_file(path, kind)
    elif head.startswith(b"PK\x03\x04"):  # torch's zip format: the central directory is at the very end
        import zipfile

        if not zipfile.is_zipfile(path):
            raise _not_a_model(path, kind, "a cut-off PyTorch checkpoint (its end is missing: an interrupted "
                                           "download)")


def check_safetensors_file(path: Path, kind: str) -> None:
    """Read a .safetensors file's header (cheap): a corrupt or cut-off file is named here, with the fix, instead of
    failing later inside a library with a bare parse error."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as e:
        raise _not_a_model(path, kind, f"not a complete safetensors file ({e}): corrupt or cut off") from e


def explain_load_error(e: Exception, path: Path, kind: str) -> VMDiffInputError:
    """A library's failure to read a checkpoint, in the pack's words. torch's own text is never relayed: it advises
    ``weights_only=False``, which would run whatever the file holds."""
    found = re.search(r"Unsupported global: GLOBAL [\w.]+", str(e))  # a real pickle with forbidden contents
    if isinstance(e, pickle.UnpicklingError) and found:
        what = f" ({found.group(0).replace('GLOBAL ', '')})"
        return VMDiffInputError(
            f"{kind}: refused to load {path.name}: the checkpoint contains pickled Python objects{what}, not only "
            f"tensors, and loading it could run arbitrary code. Use the original release file or a .safetensors "
            f"conversion. Expected {SCORE_FOLDERS[kind][1]}.")
    detail = str(e).splitlines()[0][:200] if str(e) else ""
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in detail:  # torch's text: never relayed
        detail = "its bytes are not a tensor checkpoint"
    return _not_a_model(path, kind, f"not a readable PyTorch checkpoint ({detail}): corrupt or cut off")


def load_weights_safely(path: Path, kind: str = "") -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file, or from a pickled checkpoint read with ``weights_only=True``
    (tensors and plain containers only: a pickled Python object is refused before anything runs). Unwraps the
    common ``{"model": sd}`` / ``{"state_dict": sd}`` wrappers and a ``module.`` prefix."""
    path = Path(path)
    sniff_file(path, kind)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any parse error means a bad file
        raise explain_load_error(e, path, kind) from None
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise VMDiffInputError(f"{kind}: {path.name} does not hold a state dict of tensors. "
                               f"Expected {SCORE_FOLDERS[kind][1]}.")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


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
    """A model widget value of ``kind``: (path, True) for a Hugging Face folder, (path, False) for a weight file;
    either looked at before loading (cheap)."""
    folder = list_hf_folders(kind).get(name)
    if folder is None:
        return resolve_weight_file(kind, name), False
    hf_weights(kind, folder)
    return folder, True


HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def hf_weights(kind: str, folder: Path) -> Path:
    """A Hugging Face folder's weight file, its config.json and weights looked at (sniff_file) before loading."""
    weights = [folder / n for n in HF_WEIGHT_NAMES if (folder / n).is_file()]
    if not weights:
        raise VMDiffInputError(f"{kind}: {folder} has config.json but no {' or '.join(HF_WEIGHT_NAMES)}. "
                               f"Expected {SCORE_FOLDERS[kind][1]}.")
    config = folder / "config.json"
    sniff_file(config, kind)
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise VMDiffInputError(f"{kind}: config.json in {folder} is not valid JSON ({e}); download the folder's "
                               f"config.json again. Expected {SCORE_FOLDERS[kind][1]}.") from e
    sniff_file(weights[0], kind)
    return weights[0]


def check_hf_weights(kind: str, folder: Path) -> Path:
    """hf_weights, and a pickled ``pytorch_model.bin`` read with weights_only=True before transformers reads it."""
    weights = hf_weights(kind, folder)
    if weights.suffix != ".safetensors":
        load_weights_safely(weights, kind)
    return weights


def from_pretrained(cls, kind: str, path: Path, ignore_missing=(), **kwargs):
    """``cls.from_pretrained`` of a local folder (or, with ``config`` and ``state_dict`` in kwargs, of tensors in
    memory) with transformers' own key handling; a tensor missing or of the wrong shape names the file."""
    source = None if "state_dict" in kwargs else str(path)
    try:
        model, loading = cls.from_pretrained(source, local_files_only=True, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise VMDiffInputError(f"{kind}: could not load {path} ({str(e).splitlines()[0][:400]}). "
                               f"Expected {SCORE_FOLDERS[kind][1]}.") from None
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
