"""Files that are not models (the scorer loaders): every format each scorer loader reads is looked
at before loading, and what it is, which file and folder, its size and where to get it are said; the pickle wording
is kept for real pickles only, and torch's ``weights_only=False`` advice is never relayed."""
import shutil
import traceback

import pytest
import torch


import folder_paths

from vmdiff_cli import tiny_scorers
from vmdiff_pack.nodes.score_loaders import (VMDiffLoadDINOv2, VMDiffLoadGroundingDINO, VMDiffLoadOpenCLIP,
                                             VMDiffLoadSAM)
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.scoring import detection
from vmdiff_pack.vmdiff_comfy.scoring.similarity import image_to_bchw

NAMES = tiny_scorers.TINY_SCORER_NAMES
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 375042383\n"
HTML = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>\n"
JSON = b'{"error": "Repository not found"}'


@pytest.fixture(scope="module")
def stand_ins():
    root = tiny_scorers.default_models_dir()
    tiny_scorers.ensure_tiny_scorers(root)
    for kind in ("dinov2", "open_clip", "grounding-dino", "bert-base-uncased", "sams"):
        folder_paths.add_model_folder_path(kind, str(root / kind))
    return root


@pytest.fixture
def bad_folder(tmp_path):
    """A models folder registered for every scorer kind, removed afterwards."""
    added = []
    for kind in ("dinov2", "open_clip", "grounding-dino", "sams"):
        (tmp_path / kind).mkdir()
        folder_paths.add_model_folder_path(kind, str(tmp_path / kind))
        added.append(kind)
    yield tmp_path
    for kind in added:
        folder_paths.folder_names_and_paths[kind][0].remove(str(tmp_path / kind))


def whole(root, kind, name):
    return (root / kind / name).read_bytes()


def contents(stand_ins):
    """What each bad file is: its bytes and the words the message must use."""
    sam = whole(stand_ins, "sams", NAMES["sam"])
    safetensors = whole(stand_ins, "open_clip", NAMES["open_clip"])
    return {"empty": (b"", "empty"), "lfs": (LFS, "Git LFS pointer"), "html": (HTML, "HTML page"),
            "json": (JSON, "JSON text"), "truncated_zip": (sam[:len(sam) // 2], "cut-off PyTorch checkpoint"),
            "truncated_safetensors": (safetensors[:len(safetensors) // 2], "not a complete safetensors file"),
            "garbage": (b"\x00garbage" * 100, "not a readable PyTorch checkpoint")}


def loaders(folder):
    """Each loader format → (write the bad file into a fresh model layout, load it, the file's name)."""
    def hf(kind, name, weights):
        def write(data):
            target = folder / kind / name
            shutil.copytree(tiny_scorers.default_models_dir() / kind / {
                "dinov2": NAMES["dinov2"], "grounding-dino": NAMES["grounding_dino_hf"], "sams": NAMES["sam_hf"]}[kind],
                target)
            (target / weights).write_bytes(data)
        return write

    def file(kind, name):
        return lambda data: (folder / kind / name).write_bytes(data)

    return {
        "sam release .pth": (file("sams", "sam_vit_b_01ec64.pth"),
                             lambda: VMDiffLoadSAM.execute("sam_vit_b_01ec64.pth"), "sam_vit_b_01ec64.pth"),
        "sam folder": (hf("sams", "sam-vit-base", "model.safetensors"), lambda: VMDiffLoadSAM.execute("sam-vit-base"),
                       "model.safetensors"),
        "gdino release .pth": (file("grounding-dino", "groundingdino_swint_ogc.pth"),
                               lambda: VMDiffLoadGroundingDINO.execute(checkpoint="groundingdino_swint_ogc.pth",
                                                                       config=detection.BUILTIN_GDINO_CONFIG,
                                                                       bert=NAMES["bert"]),
                               "groundingdino_swint_ogc.pth"),
        "gdino folder": (hf("grounding-dino", "grounding-dino-tiny", "model.safetensors"),
                         lambda: VMDiffLoadGroundingDINO.execute(checkpoint="grounding-dino-tiny",
                                                                 config=detection.BUILTIN_GDINO_CONFIG),
                         "model.safetensors"),
        "dinov2 folder": (hf("dinov2", "dinov2-base", "model.safetensors"),
                          lambda: VMDiffLoadDINOv2.execute("dinov2-base"), "model.safetensors"),
        "open_clip .bin": (file("open_clip", "open_clip_pytorch_model.bin"),
                           lambda: VMDiffLoadOpenCLIP.execute(NAMES["open_clip_model"], "open_clip_pytorch_model.bin"),
                           "open_clip_pytorch_model.bin"),
        "open_clip .safetensors": (file("open_clip", "open_clip_model.safetensors"),
                                   lambda: VMDiffLoadOpenCLIP.execute(NAMES["open_clip_model"],
                                                                      "open_clip_model.safetensors"),
                                   "open_clip_model.safetensors"),
    }


def error_of(call) -> VMDiffInputError:
    with pytest.raises(VMDiffInputError) as info:
        call()
    text = "".join(traceback.format_exception(info.value))
    assert "weights_only=False" not in text and "weights_only" not in str(info.value), text[-1500:]
    return info.value


FORMATS = ["sam release .pth", "sam folder", "gdino release .pth", "gdino folder", "dinov2 folder", "open_clip .bin",
           "open_clip .safetensors"]
KINDS = ["empty", "lfs", "html", "json", "truncated_zip", "truncated_safetensors", "garbage"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_files_that_are_not_models_are_named_for_every_loader_format(stand_ins, bad_folder, fmt):
    for kind in KINDS:
        data, words = contents(stand_ins)[kind]
        for sub in ("sams", "grounding-dino", "dinov2", "open_clip"):  # a fresh layout for each bad file
            shutil.rmtree(bad_folder / sub)
            (bad_folder / sub).mkdir()
        write, load, name = loaders(bad_folder)[fmt]
        write(data)
        message = str(error_of(load))
        if name.endswith(".safetensors") and kind in ("truncated_zip", "garbage"):
            words = "not a complete safetensors file"
        elif not name.endswith(".safetensors") and kind == "truncated_safetensors":
            words = "not a readable PyTorch checkpoint"
        assert words in message, (fmt, kind, message)
        assert name in message and str(bad_folder) in message and f"{len(data):,} bytes" in message, (fmt, kind,
                                                                                                     message)
        assert "https://" in message and "pickled" not in message, (fmt, kind, message)
        if kind == "lfs":
            assert "375,042,383 bytes" in message  # the size the pointer promises


def test_cheap_checks_run_at_validation(stand_ins, bad_folder):
    (bad_folder / "sams" / "sam_vit_h_4b8939.pth").write_bytes(LFS)
    message = VMDiffLoadSAM.validate_inputs("sam_vit_h_4b8939.pth")
    assert isinstance(message, str) and "Git LFS pointer" in message and "sam_vit_h_4b8939.pth" in message
    assert "2,564,550,879 bytes" not in message  # the pointer's own size wins over the table: it is what was promised


def test_malformed_grounding_dino_configs_name_the_file(stand_ins, bad_folder):
    for name, text in (("bad.cfg.py", "hidden_dim = (256\n"), ("bad.json", '{"hidden_dim": 256,'),
                       ("list.json", "[1, 2]"), ("swinl.cfg.py", "backbone = 'swin_L_384_22k'\n")):
        (bad_folder / "grounding-dino" / name).write_text(text)
        message = str(error_of(lambda: VMDiffLoadGroundingDINO.execute(
            checkpoint=NAMES["grounding_dino"], config=name, bert=NAMES["bert"])))
        assert name in message and ("fix or delete" in message or "not supported" in message), message
        assert VMDiffLoadGroundingDINO.validate_inputs(checkpoint=NAMES["grounding_dino"], config=name,
                                                       bert=NAMES["bert"]) is not True or name == "swinl.cfg.py"


def test_bad_open_clip_configs_are_named_and_never_poison_later_loads(stand_ins, bad_folder):
    import open_clip

    tiny = NAMES["open_clip_model"]
    good_config = (stand_ins / "open_clip" / f"{tiny}.json").read_text()
    shutil.copy(stand_ins / "open_clip" / NAMES["open_clip"], bad_folder / "open_clip" / "mine.safetensors")
    for text, words in (("{not json", "malformed"), ('{"embed_dim": 16}', "not an OpenCLIP model config"),
                        (good_config.replace('"width": 32', '"width": 48'), "not a vmdiff-mine checkpoint")):
        (bad_folder / "open_clip" / "vmdiff-mine.json").write_text(text)
        message = str(error_of(lambda: VMDiffLoadOpenCLIP.execute("vmdiff-mine", "mine.safetensors")))
        assert words in message and "vmdiff-mine" in message, message
        assert "vmdiff-mine" not in open_clip.list_models()  # never left registered
        # the other models still load
        assert VMDiffLoadOpenCLIP.execute(tiny, NAMES["open_clip"]).result[0].encode_texts(["owl"]).shape == (1, 16)
    (bad_folder / "open_clip" / "vmdiff-mine.json").write_text(good_config)  # fixed: loads
    mine = VMDiffLoadOpenCLIP.execute("vmdiff-mine", "mine.safetensors").result[0]
    assert mine.encode_texts(["owl"]).shape == (1, 16)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_scorer_inputs_with_non_finite_pixels_are_refused_by_name(bad):
    for name in ("image_1", "image_2", "images"):
        image = torch.rand(1, 8, 8, 3)
        image[0, 3, 4, 1] = bad
        with pytest.raises(VMDiffInputError, match=f"^{name}: 1 pixel values are NaN or infinite"):
            image_to_bchw(image, name)
