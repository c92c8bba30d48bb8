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


#: how deep under a model folder a Hugging Face folder is looked for (models/dinov2/facebook/dinov2-base is 2)
HF_SEARCH_DEPTH = 3


def _hf_dirs(base: Path) -> list[Path]:
    """The Hugging Face folders under ``base`` (``base`` itself included): each folder holding config.json, found
    to HF_SEARCH_DEPTH levels, never looking inside one (its files belong to it) nor into hidden folders."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if (folder / "config.json").is_file():
            found.append(folder)
            return
        if depth >= HF_SEARCH_DEPTH:
            return
        try:
            subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for sub in subs:
            walk(sub, depth + 1)

    if base.is_dir():
        walk(base, 0)
    return found


def _hf_name(base: Path, folder: Path) -> str:
    """A Hugging Face folder's widget name: its path under the model folder (``dinov2-base``,
    ``facebook/dinov2-base``), or the model folder's own name when the model folder is one."""
    return folder.name if folder == base else folder.relative_to(base).as_posix()


def list_hf_folders(kind: str) -> dict[str, Path]:
    """Hugging Face model folders of a kind: each registered path that holds config.json itself (named by its
    folder name), and each folder below it that does (named by its path under it, sub-folders of sub-folders
    included, e.g. ``facebook/dinov2-base``)."""
    found: dict[str, Path] = {}
    for base in map(Path, folder_paths.get_folder_paths(kind)):
        for folder in _hf_dirs(base):
            found.setdefault(_hf_name(base, folder), folder)
    return found


def hf_folder_holding(kind: str, name: str) -> tuple[str, Path] | None:
    """(widget name, path) of the Hugging Face folder of ``kind`` that the listed file ``name`` (a path under a
    model folder, as folder_paths lists it) lies in, or None."""
    for base in map(Path, folder_paths.get_folder_paths(kind)):
        target = base / name
        for folder in _hf_dirs(base):
            if folder in target.parents:
                return _hf_name(base, folder), folder
    return None


def is_open_clip_file(name: str) -> bool:
    """An OpenCLIP-layout file in a Hugging Face repository of an OpenCLIP model (laion/CLIP-ViT-*: the repository
    holds open_clip_model.safetensors / open_clip_pytorch_model.bin beside the transformers model.safetensors)."""
    return Path(name).name.startswith("open_clip")


def list_files(kind: str, extensions: set[str]) -> list[str]:
    """The files of ``kind`` with one of ``extensions``, without those inside a Hugging Face folder (the folder is
    what a loader takes; its config.json, tokenizer files and weights, shards included, are not choices of their
    own). For open_clip, a repository folder's OpenCLIP-layout files stay (they are what the loader takes)."""
    names = [f for f in folder_paths.get_filename_list(kind) if Path(f).suffix.lower() in extensions]
    holders = {base: _hf_dirs(base) for base in map(Path, folder_paths.get_folder_paths(kind))}
    if not any(holders.values()):
        return names

    def inside(name: str) -> bool:
        if kind == "open_clip" and is_open_clip_file(name) and Path(name).suffix.lower() in WEIGHT_EXTENSIONS:
            return False
        return any(folder in (base / name).parents for base, folders in holders.items() for folder in folders)

    return [f for f in names if not inside(f)]


def list_weight_files(kind: str) -> list[str]:
    return list_files(kind, WEIGHT_EXTENSIONS)


def pick_the_folder_error(kind: str, name: str) -> VMDiffInputError | None:
    """The error for a file inside a Hugging Face folder given where a loader takes the folder (an old prompt, an
    API call): it names the folder to pick instead. None when ``name`` is not such a file."""
    held = hf_folder_holding(kind, name)
    if held is None:
        return None
    folder_name, folder = held
    if kind == "open_clip":
        if is_open_clip_file(name):
            return None
        files = sorted(p.relative_to(folder).as_posix() for p in folder.iterdir()
                       if is_open_clip_file(p.name) and p.suffix.lower() in WEIGHT_EXTENSIONS)
        fix = (f"pick {folder_name}/{files[0]} (the OpenCLIP layout of the same model) instead" if files else
               f"download open_clip_model.safetensors of the same repository into {folder}")
        return VMDiffInputError(f"open_clip: {name} is the transformers layout of the Hugging Face folder "
                                f"{folder_name}, which OpenCLIP cannot read; {fix}.")
    return VMDiffInputError(f"{kind}: {name} is a file inside the Hugging Face folder {folder_name}; pick the folder "
                            f"{folder_name} instead (the loader reads its config.json and weights together).")


def resolve_weight_file(kind: str, name: str) -> Path:
    """The full path of a weight file of ``kind``, looked at (sniff_file) before anything loads it. A file inside a
    Hugging Face folder is refused with the folder to pick."""
    inner = pick_the_folder_error(kind, name) if name else None
    if inner is not None:
        raise inner
    path = folder_paths.get_full_path(kind, name) if name else None
    if path is None or not os.path.isfile(path):
        raise VMDiffInputError(missing_file_message(kind, name))
    sniff_file(Path(path), kind)
    return Path(path)


def resolve_hf_folder(kind: str, name: str) -> Path:
    folder = list_hf_folders(kind).get(name)
    if folder is None:
        raise pick_the_folder_error(kind, name) if name and hf_folder_holding(kind, name) else \
            VMDiffInputError(missing_file_message(kind, name, "folder"))
    hf_weights(kind, folder)  # its config and weights (every shard) looked at, as resolve_model does
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
#: the index of sharded weights (model-00001-of-00002.safetensors, ...), as transformers writes it
HF_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def hf_shards(kind: str, folder: Path, index: Path) -> list[Path]:
    """The shard files a weights index lists, each there (a missing shard is named with the fix)."""
    sniff_file(index, kind)
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise VMDiffInputError(f"{kind}: {index.name} in {folder} is not a weights index ({e}); download it again. "
                               f"Expected {SCORE_FOLDERS[kind][1]}.") from None
    missing = [n for n in names if not (folder / n).is_file()]
    if missing or not names:
        raise VMDiffInputError(f"{kind}: {folder} is missing {len(missing)} of the {len(names)} weight shards "
                               f"{index.name} lists (e.g. {missing[:2]}); download them into the folder. Expected "
                               f"{SCORE_FOLDERS[kind][1]}.")
    return [folder / n for n in names]


def hf_weights(kind: str, folder: Path) -> Path:
    """A Hugging Face folder's weight file (or the first shard of sharded weights), its config.json and weights
    looked at (sniff_file) before loading."""
    weights = [folder / n for n in HF_WEIGHT_NAMES if (folder / n).is_file()]
    shards = [] if weights else [s for n in HF_INDEX_NAMES if (folder / n).is_file()
                                 for s in hf_shards(kind, folder, folder / n)]
    if not weights and not shards:
        raise VMDiffInputError(f"{kind}: {folder} has config.json but no {' or '.join(HF_WEIGHT_NAMES)} (nor sharded "
                               f"weights with {HF_INDEX_NAMES[0]}). Expected {SCORE_FOLDERS[kind][1]}.")
    config = folder / "config.json"
    sniff_file(config, kind)
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise VMDiffInputError(f"{kind}: config.json in {folder} is not valid JSON ({e}); download the folder's "
                               f"config.json again. Expected {SCORE_FOLDERS[kind][1]}.") from e
    for path in weights[:1] or shards:
        sniff_file(path, kind)
    return (weights or shards)[0]


def check_hf_weights(kind: str, folder: Path) -> Path:
    """hf_weights, and pickled ``pytorch_model.bin`` weights (or shards) read with weights_only=True before
    transformers reads them."""
    weights = hf_weights(kind, folder)
    if weights.suffix != ".safetensors":
        pickled = [weights] if weights.name in HF_WEIGHT_NAMES else hf_shards(kind, folder, folder / HF_INDEX_NAMES[1])
        for path in pickled:
            load_weights_safely(path, kind)
    return weights


def computed_buffers(model: torch.nn.Module, missing: list[str]) -> list[str]:
    """The ``missing`` keys that are integer buffers of ``model``: index tables it computes from its config
    (Swin's ``relative_position_index``, BERT's ``position_ids``), never learned. transformers versions differ in
    whether they keep such a buffer in the state dict (4.5x: persistent, so a file without it reports it missing;
    5.x: not), so it is judged by the model's own buffers, not by a fixed list; a missing parameter or float
    buffer (a learned statistic, a random Fourier matrix) stays an error."""
    buffers = {name: b for name, b in model.named_buffers()}
    return [k for k in missing if k in buffers and not (buffers[k].is_floating_point() or buffers[k].is_complex())]


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
    computed = computed_buffers(model, missing)
    if computed:
        log.info("%s: %d index buffers computed by the model, not read from %s (e.g. %s)", kind, len(computed),
                 path.name, computed[:2])
        missing = [k for k in missing if k not in computed]
    mismatched = list(loading.get("mismatched_keys", []))
    if missing or mismatched:
        raise VMDiffInputError(f"{kind}: {path.name} does not fit this model ({len(missing)} tensors missing, e.g. "
                               f"{sorted(missing)[:3]}; {len(mismatched)} of another shape, e.g. {mismatched[:2]}). "
                               f"Expected {SCORE_FOLDERS[kind][1]}.")
    if loading.get("unexpected_keys"):
        log.info("%s: %d unused tensors in %s (e.g. %s)", kind, len(loading["unexpected_keys"]), path.name,
                 sorted(loading["unexpected_keys"])[:3])
    return model.eval().float()
