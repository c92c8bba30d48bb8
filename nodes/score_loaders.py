"""Loader nodes for the Similarity Score's models (DINOv2, OpenCLIP, GroundingDINO, SAM); see vmdiff_comfy/scoring/
for the folders, the safe loading and the model management."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import VMDiffInputError
from ..vmdiff_comfy.scoring.clip import load_open_clip, open_clip_model_names
from ..vmdiff_comfy.scoring import detection, segmentation
from ..vmdiff_comfy.scoring.dino import load_dinov2
from ..vmdiff_comfy.scoring.files import list_hf_folders, list_weight_files, resolve_hf_folder, resolve_model, \
    resolve_weight_file
from ..vmdiff_comfy.scoring.scorer import ScorerModel
from ..vmdiff_comfy.scoring.sockets import DinoType, GroundingDinoType, OpenClipType, SamType


def _check(*checks) -> bool | str:
    """validate_inputs helper: each ``(check, *args)`` in turn; True, or the first loader error message (folder,
    expected files, where to get them)."""
    try:
        for check, *args in checks:
            check(*args)
    except VMDiffInputError as e:
        return str(e)
    return True


def _hf_folder_input(name: str, kind: str, preferred: str, tooltip: str, optional=False) -> io.Combo.Input:
    """A combo of the Hugging Face folders of ``kind``, defaulting to ``preferred`` when it is there."""
    folders = sorted(list_hf_folders(kind))
    return io.Combo.Input(name, options=folders, default=preferred if preferred in folders else None, tooltip=tooltip,
                          optional=optional)


def _loaded(model: ScorerModel, detail: str = "") -> io.NodeOutput:
    """A loader's output: the model, and its name and parameter count as preview text."""
    params = sum(p.numel() for p in model.patcher.model.parameters())
    return io.NodeOutput(model, ui=ui.PreviewText(f"{model.name}: {params / 1e6:.1f} M parameters{detail}"))


class VMDiffLoadDINOv2(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffLoadDINOv2",
            display_name="VMDiff Load DINOv2",
            category="VMDiff/score",
            description="DINOv2 for the score's identity terms D1, D2 (feature: mean of all output tokens). Hugging "
                        "Face folders in models/dinov2 (dinov2-base: config.json + model.safetensors).",
            inputs=[_hf_folder_input("dinov2", "dinov2", "dinov2-base",
                                     "A folder in models/dinov2 (facebook/dinov2-base is the reference).")],
            outputs=[DinoType.Output(display_name="dino")],
        )

    @classmethod
    def validate_inputs(cls, dinov2):
        return _check((resolve_hf_folder, "dinov2", dinov2))

    @classmethod
    def execute(cls, dinov2) -> io.NodeOutput:
        return _loaded(load_dinov2(dinov2))


class VMDiffLoadOpenCLIP(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffLoadOpenCLIP",
            display_name="VMDiff Load OpenCLIP",
            category="VMDiff/score",
            description="OpenCLIP for the score's text terms T1, T2 (image and text towers). Checkpoints in "
                        "models/open_clip; extra model configs as models/open_clip/<name>.json.",
            inputs=[
                io.Combo.Input("model_name", options=open_clip_model_names(), default="ViT-bigG-14",
                               tooltip="The OpenCLIP architecture of the checkpoint (reference: ViT-bigG-14)."),
                io.Combo.Input("checkpoint", options=list_weight_files("open_clip"),
                               tooltip="e.g. open_clip_model.safetensors of laion/CLIP-ViT-bigG-14-laion2B-39B-b160k."),
            ],
            outputs=[OpenClipType.Output(display_name="open_clip")],
        )

    @classmethod
    def validate_inputs(cls, checkpoint):
        return _check((resolve_weight_file, "open_clip", checkpoint))

    @classmethod
    def execute(cls, model_name, checkpoint) -> io.NodeOutput:
        return _loaded(load_open_clip(model_name, checkpoint))


def _model_input(choices: list[str], preferred: str, tooltip: str) -> io.Combo.Input:
    """The checkpoint combo of a model kind: its Hugging Face folders and its original release files."""
    return io.Combo.Input("checkpoint", options=choices, default=preferred if preferred in choices else None,
                          tooltip=tooltip)


class VMDiffLoadGroundingDINO(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffLoadGroundingDINO",
            display_name="VMDiff Load GroundingDINO",
            category="VMDiff/score",
            description="GroundingDINO (transformers) to find the object before scoring: a Hugging Face folder in "
                        "models/grounding-dino (grounding-dino-tiny), or the original groundingdino_swint_ogc.pth "
                        "with its text encoder from models/bert-base-uncased. Nothing is downloaded.",
            inputs=[
                _model_input(detection.model_choices(), "grounding-dino-tiny",
                             "A Hugging Face folder (IDEA-Research/grounding-dino-tiny, 0.69 GB, all in one folder) "
                             "or an original release file (groundingdino_swint_ogc.pth, needs bert)."),
                io.Combo.Input("config", options=detection.grounding_dino_configs(),
                               default=detection.BUILTIN_GDINO_CONFIG,
                               tooltip="Original release files only: the built-in SwinT-OGC / SwinB config, or a "
                                       "*.cfg.py / *.json in models/grounding-dino (read as literals, never run)."),
                _hf_folder_input("bert", "bert-base-uncased", "bert-base-uncased",
                                 "Original release files only: models/bert-base-uncased (config.json, weights, "
                                 "vocab.txt).", optional=True),
            ],
            outputs=[GroundingDinoType.Output(display_name="grounding_dino")],
        )

    @classmethod
    def validate_inputs(cls, checkpoint, config, bert=None):
        return _check((detection.check_choice, checkpoint, config, bert))

    @classmethod
    def execute(cls, checkpoint, config, bert=None) -> io.NodeOutput:
        return _loaded(detection.load_grounding_dino(config, checkpoint, bert))


class VMDiffLoadSAM(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffLoadSAM",
            display_name="VMDiff Load SAM",
            category="VMDiff/score",
            description="Segment Anything (transformers SamModel) for the 'sam' isolation: box → object mask. A "
                        "Hugging Face folder (sam-vit-base) or an original sam_vit_{b,l,h}_*.pth in models/sams.",
            inputs=[_model_input(segmentation.model_choices(), "sam-vit-base",
                                 "A Hugging Face folder (facebook/sam-vit-base) or an original release file "
                                 "(sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth).")],
            outputs=[SamType.Output(display_name="sam")],
        )

    @classmethod
    def validate_inputs(cls, checkpoint):
        return _check((resolve_model, "sams", checkpoint))

    @classmethod
    def execute(cls, checkpoint) -> io.NodeOutput:
        model = segmentation.load_sam(checkpoint)
        return _loaded(model, f" ({model.info['variant']}, {model.info['format']})")


LOADER_NODES = [VMDiffLoadDINOv2, VMDiffLoadOpenCLIP, VMDiffLoadGroundingDINO, VMDiffLoadSAM]
