"""Loader lists offer only what a loader takes. A Hugging Face folder is one choice: its weights
(shards included), config.json and tokenizer files are never listed beside it, wherever it sits (sub-folders of
sub-folders too); a file inside one given anyway (an old prompt, the API) is refused with the folder to pick. For an
OpenCLIP repository folder the OpenCLIP-layout file stays a choice and its transformers-layout twin is refused with
that file to pick."""
import json
import re
import shutil

import pytest
import torch

from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
load_pack()
import folder_paths  # noqa: E402

from vmdiff_cli import tiny_scorers  # noqa: E402
from vmdiff_cli.comfy_server import ComfyServer, PromptError  # noqa: E402
from vmdiff_pack.nodes.score_loaders import (VMDiffLoadDINOv2, VMDiffLoadGroundingDINO, VMDiffLoadOpenCLIP,  # noqa: E402
                                             VMDiffLoadSAM)
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError  # noqa: E402
from vmdiff_pack.vmdiff_comfy.scoring import detection  # noqa: E402

NAMES = tiny_scorers.TINY_SCORER_NAMES
KINDS = ("dinov2", "open_clip", "grounding-dino", "bert-base-uncased", "sams")
HF_TINY = {"dinov2": NAMES["dinov2"], "grounding-dino": NAMES["grounding_dino_hf"], "sams": NAMES["sam_hf"]}


def shard(folder, parts):
    """Re-save a Hugging Face folder's weights in transformers' sharded layout (model-0000k-of-0000n.safetensors +
    model.safetensors.index.json), as large models are published."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    keys = sorted(weights)
    weight_map = {}
    for i in range(parts):
        name = f"model-{i + 1:05d}-of-{parts:05d}.safetensors"
        part = {k: weights[k].contiguous() for k in keys[i::parts]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """A models folder as users have it: Hugging Face folders at the top, in sub-folders of sub-folders and
    sharded, an OpenCLIP repository folder, a config-only folder, beside original release files."""
    src = tiny_scorers.default_models_dir()
    tiny_scorers.ensure_tiny_scorers(src)
    root = tmp_path_factory.mktemp("models")
    for kind in KINDS:
        (root / kind).mkdir()
    shutil.copytree(src / "dinov2" / HF_TINY["dinov2"], root / "dinov2" / "dinov2-base")
    shutil.copytree(src / "dinov2" / HF_TINY["dinov2"], root / "dinov2" / "facebook" / "dinov2-small")
    shutil.copytree(src / "dinov2" / HF_TINY["dinov2"], root / "dinov2" / "dinov2-sharded")
    shard(root / "dinov2" / "dinov2-sharded", 2)
    shutil.copytree(src / "grounding-dino" / HF_TINY["grounding-dino"], root / "grounding-dino" / "grounding-dino-tiny")
    shutil.copytree(src / "grounding-dino" / HF_TINY["grounding-dino"],
                    root / "grounding-dino" / "IDEA-Research" / "grounding-dino-base")
    for name in (NAMES["grounding_dino"], NAMES["grounding_dino_config"]):
        shutil.copy(src / "grounding-dino" / name, root / "grounding-dino" / name)
    shutil.copytree(src / "bert-base-uncased" / NAMES["bert"], root / "bert-base-uncased" / NAMES["bert"])
    shutil.copytree(src / "sams" / HF_TINY["sams"], root / "sams" / "sam-vit-base")
    shutil.copytree(src / "sams" / HF_TINY["sams"], root / "sams" / "facebook" / "sam-vit-sharded")
    shard(root / "sams" / "facebook" / "sam-vit-sharded", 3)
    shutil.copy(src / "sams" / NAMES["sam"], root / "sams" / "sam_vit_b_01ec64.pth")
    (root / "sams" / "sam-config-only").mkdir()
    shutil.copy(src / "sams" / HF_TINY["sams"] / "config.json", root / "sams" / "sam-config-only" / "config.json")
    # laion/CLIP-ViT-*: the OpenCLIP file beside the transformers layout, their configs and tokenizer files
    repo = root / "open_clip" / "CLIP-ViT-tiny-laion"
    repo.mkdir()
    shutil.copy(src / "open_clip" / NAMES["open_clip"], repo / "open_clip_model.safetensors")
    shutil.copy(src / "dinov2" / HF_TINY["dinov2"] / "model.safetensors", repo / "model.safetensors")
    (repo / "config.json").write_text(json.dumps({"architectures": ["CLIPModel"], "model_type": "clip"}))
    (repo / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_scorers.TINY_OPEN_CLIP_CONFIG}))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (repo / name).write_text("{}")
    shutil.copy(src / "open_clip" / f"{NAMES['open_clip_model']}.json", root / "open_clip")
    shutil.copy(src / "open_clip" / NAMES["open_clip"], root / "open_clip")
    return root


@pytest.fixture
def registered(layout):
    """The layout's folders are the only ones registered for the scorer kinds while a test runs."""
    saved = {kind: folder_paths.folder_names_and_paths[kind] for kind in KINDS}
    for kind in KINDS:
        folder_paths.folder_names_and_paths[kind] = ([str(layout / kind)], set(saved[kind][1]))
    yield layout
    for kind, value in saved.items():
        folder_paths.folder_names_and_paths[kind] = value


def options(node, name):
    schema = node.define_schema()
    (widget,) = [i for i in schema.inputs if i.id == name]
    return list(widget.options)


INSIDE = [  # (node, the file inside a folder given where the folder is taken, the folder to pick)
    (VMDiffLoadDINOv2, dict(dinov2="dinov2-base/model.safetensors"), "dinov2-base"),
    (VMDiffLoadDINOv2, dict(dinov2="dinov2-base/config.json"), "dinov2-base"),
    (VMDiffLoadDINOv2, dict(dinov2="facebook/dinov2-small/model.safetensors"), "facebook/dinov2-small"),
    (VMDiffLoadDINOv2, dict(dinov2="dinov2-sharded/model-00001-of-00002.safetensors"), "dinov2-sharded"),
    (VMDiffLoadGroundingDINO, dict(checkpoint="grounding-dino-tiny/model.safetensors",
                                   config=detection.BUILTIN_GDINO_CONFIG), "grounding-dino-tiny"),
    (VMDiffLoadGroundingDINO, dict(checkpoint="IDEA-Research/grounding-dino-base/model.safetensors",
                                   config=detection.BUILTIN_GDINO_CONFIG, bert=NAMES["bert"]),
     "IDEA-Research/grounding-dino-base"),
    (VMDiffLoadGroundingDINO, dict(checkpoint=NAMES["grounding_dino"], config="grounding-dino-tiny/config.json",
                                   bert=NAMES["bert"]), "grounding-dino-tiny"),
    (VMDiffLoadSAM, dict(checkpoint="sam-vit-base/model.safetensors"), "sam-vit-base"),
    (VMDiffLoadSAM, dict(checkpoint="facebook/sam-vit-sharded/model-00002-of-00003.safetensors"),
     "facebook/sam-vit-sharded"),
]


def test_lists_hold_folders_and_release_files_never_a_folders_files(registered):
    assert options(VMDiffLoadDINOv2, "dinov2") == ["dinov2-base", "dinov2-sharded", "facebook/dinov2-small"]
    assert options(VMDiffLoadGroundingDINO, "checkpoint") == [
        "IDEA-Research/grounding-dino-base", "grounding-dino-tiny", NAMES["grounding_dino"]]
    assert options(VMDiffLoadGroundingDINO, "config") == [*detection.BUILTIN_CONFIGS, NAMES["grounding_dino_config"]]
    assert options(VMDiffLoadGroundingDINO, "bert") == [NAMES["bert"]]
    assert options(VMDiffLoadSAM, "checkpoint") == ["facebook/sam-vit-sharded", "sam-config-only", "sam-vit-base",
                                                    "sam_vit_b_01ec64.pth"]
    assert options(VMDiffLoadOpenCLIP, "checkpoint") == ["CLIP-ViT-tiny-laion/open_clip_model.safetensors",
                                                         NAMES["open_clip"]]
    model_names = options(VMDiffLoadOpenCLIP, "model_name")
    assert NAMES["open_clip_model"] in model_names
    assert not {"config", "open_clip_config", "tokenizer", "tokenizer_config", "special_tokens_map"} & set(model_names)


@pytest.mark.parametrize("node, inputs, folder", INSIDE, ids=[str(i[1]) for i in INSIDE])
def test_a_file_inside_a_folder_says_pick_the_folder(registered, node, inputs, folder):
    message = node.validate_inputs(**inputs)
    assert isinstance(message, str) and f"pick the folder {folder} instead" in message, message
    with pytest.raises(VMDiffInputError, match=f"pick the folder {folder} instead"):
        node.execute(**inputs)


def test_open_clip_repository_folder_offers_its_open_clip_file(registered):
    message = VMDiffLoadOpenCLIP.validate_inputs(checkpoint="CLIP-ViT-tiny-laion/model.safetensors")
    assert "transformers layout" in message and "pick CLIP-ViT-tiny-laion/open_clip_model.safetensors" in message
    model = VMDiffLoadOpenCLIP.execute(NAMES["open_clip_model"],
                                       "CLIP-ViT-tiny-laion/open_clip_model.safetensors").result[0]
    assert model.encode_texts(["owl"]).shape == (1, 16)


def same_weights(a, b) -> bool:
    sa, sb = a.patcher.model.state_dict(), b.patcher.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_nested_and_sharded_folders_load_as_their_flat_twin(registered):
    flat = VMDiffLoadDINOv2.execute("dinov2-base").result[0]
    for name in ("facebook/dinov2-small", "dinov2-sharded"):
        assert VMDiffLoadDINOv2.validate_inputs(name) is True
        assert same_weights(VMDiffLoadDINOv2.execute(name).result[0], flat), name
    assert VMDiffLoadSAM.validate_inputs("facebook/sam-vit-sharded") is True
    assert same_weights(VMDiffLoadSAM.execute("facebook/sam-vit-sharded").result[0],
                        VMDiffLoadSAM.execute("sam-vit-base").result[0])
    nested = VMDiffLoadGroundingDINO.execute(checkpoint="IDEA-Research/grounding-dino-base",
                                             config=detection.BUILTIN_GDINO_CONFIG).result[0]
    assert same_weights(nested, VMDiffLoadGroundingDINO.execute(checkpoint="grounding-dino-tiny",
                                                                config=detection.BUILTIN_GDINO_CONFIG).result[0])


def test_a_missing_shard_or_a_config_only_folder_is_named(registered):
    message = VMDiffLoadSAM.validate_inputs("sam-config-only")
    assert "has config.json but no model.safetensors" in message and "sam-config-only" in message
    victim = registered / "dinov2" / "dinov2-sharded" / "model-00002-of-00002.safetensors"
    saved = victim.read_bytes()
    victim.unlink()
    try:
        message = VMDiffLoadDINOv2.validate_inputs("dinov2-sharded")
        assert "missing 1 of the 2 weight shards" in message and "model-00002-of-00002.safetensors" in message
    finally:
        victim.write_bytes(saved)


def test_index_buffers_in_or_out_of_the_file_load_alike(registered):
    """Transformers 4.5x keeps integer index buffers (Swin's
    relative_position_index) in the state dict, 5.x does not, so a folder saved by one version is read by the other
    with them extra or missing. Both load to the same model; a missing parameter is still refused."""
    from safetensors.torch import load_file, save_file

    config = detection.BUILTIN_GDINO_CONFIG
    base = registered / "grounding-dino" / "grounding-dino-tiny"
    reference = VMDiffLoadGroundingDINO.execute(checkpoint="grounding-dino-tiny", config=config).result[0]
    index = {n: b.contiguous() for n, b in reference.patcher.model.named_buffers() if not b.is_floating_point()}
    assert sum("relative_position_index" in n for n in index) >= 2
    weights = load_file(str(base / "model.safetensors"))
    dropped = sorted(k for k in weights if ".backbone." in k and k.endswith(".weight"))[0]
    variants = {"with-index": {**weights, **index},
                "without-index": {k: v for k, v in weights.items() if k not in index},
                "without-a-weight": {k: v for k, v in weights.items() if k != dropped}}
    made = []
    try:
        for name, tensors in variants.items():
            folder = base.parent / f"gd-{name}"
            shutil.copytree(base, folder)
            made.append(folder)
            save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
            if name == "without-a-weight":
                # named as this transformers version names it (5.x: under ...conv_encoder.model.swin.)
                expected = r"1 tensors missing, e\.g\. \['[\w.]*" + re.escape(".".join(dropped.split(".")[-3:])) + "'"
                with pytest.raises(VMDiffInputError, match=expected):
                    VMDiffLoadGroundingDINO.execute(checkpoint=folder.name, config=config)
            else:
                assert same_weights(VMDiffLoadGroundingDINO.execute(checkpoint=folder.name, config=config).result[0],
                                    reference), name
    finally:
        for folder in made:
            shutil.rmtree(folder)


def combo(info: dict, node: str, name: str) -> list:
    """A combo input's options in /object_info (V3 nodes: ["COMBO", {"options": [...]}], V1: [[...], {...}])."""
    spec = {**info[node]["input"].get("required", {}), **info[node]["input"].get("optional", {})}[name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


@pytest.mark.slow
def test_server_lists_and_refusals(layout):
    """Through a real server: /object_info offers the folders (not their files), a prompt naming a folder's file is
    refused at validation with the folder to pick, and the same prompt with the folder runs."""
    with ComfyServer(layout) as server:
        info = server.http.get(server.url + "/object_info", timeout=120).json()
        listed = {node: combo(info, node, "checkpoint")
                  for node in ("VMDiffLoadGroundingDINO", "VMDiffLoadSAM", "VMDiffLoadOpenCLIP")}
        assert all("/model" not in name or name.endswith("/open_clip_model.safetensors")
                   for names in listed.values() for name in names), listed
        assert "IDEA-Research/grounding-dino-base" in listed["VMDiffLoadGroundingDINO"]
        assert "facebook/sam-vit-sharded" in listed["VMDiffLoadSAM"]

        def prompt(checkpoint):
            return {"sam": {"class_type": "VMDiffLoadSAM", "inputs": {"checkpoint": checkpoint}},
                    "show": {"class_type": "PreviewAny", "inputs": {"source": ["sam", 0]}}}

        with pytest.raises(PromptError, match="pick the folder facebook/sam-vit-sharded instead"):
            server.run(prompt("facebook/sam-vit-sharded/model-00001-of-00003.safetensors"))
        assert server.run(prompt("facebook/sam-vit-sharded"), timeout=600)["status"]["status_str"] == "success"
