"""Writes the pack's example workflows (UI format, what ComfyUI's "Open" loads) from one compact description.

Run after changing a node's inputs or a declared default: ``python -m scripts.build_workflows``. The node definitions
(input order, which inputs are widgets, output types, defaults) are read from the real node classes, in-process.
A description names only what a workflow sets: a widget it leaves out is saved at the node's declared default
(vmdiff_comfy/stages/settings.py for the VMDiff stages), so changing a default there is one edit plus a rebuild. A
value a workflow sets away from its default on purpose is ``on_purpose(reason, name=value)``: the reason is shown in
the workflow's Note and kept in the node's properties (tests/nodes/test_workflow_defaults.py checks both). The API
twins in
``workflows/api/`` are then made from the UI files by ``vmdiff_cli/workflow_convert.py`` with the object_info of a real
ComfyUI server it starts (a test keeps both in sync).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / "workflows"
PRIMITIVES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# The example photos every workflow loads (example_inputs/, copied into ComfyUI's input folder when the pack loads;
# CC0 / public domain, from scikit-image's data) and what they show.
EXAMPLE_IMAGES = ("vmdiff_example_cat.jpg", "vmdiff_example_coffee_cup.jpg", "vmdiff_example_rocket.jpg")
EXAMPLE_LABELS = ("cat", "coffee cup", "rocket")



@dataclass(frozen=True)
class OnPurpose:
    """A widget value a workflow sets away from the node's declared default, and why (the workflow's Note says it)."""

    value: Any
    reason: str


def on_purpose(reason: str, **values) -> dict[str, OnPurpose]:
    """``{input: OnPurpose(value, reason)}`` for a node description's values."""
    return {name: OnPurpose(value, reason) for name, value in values.items()}


@dataclass(frozen=True)
class Default:
    """The declared default of ``class_type``'s input ``name`` (a Primitive node standing in for that widget)."""

    class_type: str
    name: str


#: Why the example workflows set what they set (one sentence each, shown in the workflow's Note).
EXAMPLE_PAIR = "the example photos' objects (example_inputs/)"
NAMED_OUTPUT = "the saved files are named after the workflow"
ONE_SEED = "seed 42 as in the VMDiff workflows, so every example starts from the same seed"
SD15_PAPER = "MagicMix's own SD1.5 setting (Liew et al.: 50 steps, CFG 7.5)"

# node key: (class_type, column, row, {input: value | on_purpose(...) | ("@", node key, output slot)}, title);
# VMDiff widgets left out are saved at their declared defaults
MANUAL = {
    "unet": ("UNETLoader", 0, 0, {"unet_name": "flux1-krea-dev.safetensors", "weight_dtype": "default"}, None),
    "clip": ("CLIPLoader", 0, 1, {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"},
             "Load CLIP-L only (no T5 needed)"),
    "clip_vision": ("CLIPVisionLoader", 0, 2, {"clip_name": "sigclip_vision_patch14_384.safetensors"}, None),
    "redux": ("StyleModelLoader", 0, 3, {"style_model_name": "flux1-redux-dev.safetensors"}, None),
    "vae": ("VAELoader", 0, 4, {"vae_name": "ae.safetensors"}, None),
    "image_1": ("LoadImage", 1, 0, {"image": EXAMPLE_IMAGES[0]}, "Object image 1"),
    "image_2": ("LoadImage", 1, 2, {"image": EXAMPLE_IMAGES[1]}, "Object image 2"),
    "tokens_1": ("VMDiffReduxEncode", 2, 0, {"clip_vision": ("@", "clip_vision", 0), "style_model": ("@", "redux", 0),
                                             "image": ("@", "image_1", 0)}, None),
    "tokens_2": ("VMDiffReduxEncode", 2, 1, {"clip_vision": ("@", "clip_vision", 0), "style_model": ("@", "redux", 0),
                                             "image": ("@", "image_2", 0)}, None),
    "prompt": ("VMDiffFusionPrompt", 2, 2, {"clip": ("@", "clip", 0), **on_purpose(
        EXAMPLE_PAIR, label_1=EXAMPLE_LABELS[0], label_2=EXAMPLE_LABELS[1])}, None),
    "blend": ("VMDiffBlendingNoise", 3, 0, {
        "model": ("@", "unet", 0), "tokens_1": ("@", "tokens_1", 0), "tokens_2": ("@", "tokens_2", 0),
        "conditioning": ("@", "prompt", 0)}, None),
    "mix": ("VMDiffMixingDenoise", 4, 0, {
        "model": ("@", "unet", 0), "eps_b": ("@", "blend", 0), "tokens_1": ("@", "tokens_1", 0),
        "tokens_2": ("@", "tokens_2", 0), "conditioning": ("@", "prompt", 0)}, None),
    "decode": ("VAEDecode", 5, 0, {"samples": ("@", "mix", 0), "vae": ("@", "vae", 0)}, None),
    "save": ("SaveImage", 6, 0, {"images": ("@", "decode", 0), "filename_prefix": "vmdiff_manual"}, None),
    "decode_preview": ("VAEDecode", 5, 2, {"samples": ("@", "blend", 2), "vae": ("@", "vae", 0)},
                       "Decode t_den preview"),
    "preview": ("PreviewImage", 6, 2, {"images": ("@", "decode_preview", 0)}, "What ε_b carries (t_den)"),
}

# The manual graph plus the Similarity Score of its result: the lightest complete scorer set for the reference's box
# isolation (DINOv2, OpenCLIP, GroundingDINO as one Hugging Face folder; no SAM: only isolation 'sam' uses it), the
# scorer (sources, labels) and the score of the decoded image, shown as text.
LABEL_NODES = {
    "label_1": ("PrimitiveString", 1, 6, {"value": EXAMPLE_LABELS[0]}, "Label 1: what image 1 shows"),
    "label_2": ("PrimitiveString", 1, 7, {"value": EXAMPLE_LABELS[1]}, "Label 2: what image 2 shows"),
}
LINKED_LABELS = {"label_1": ("@", "label_1", 0), "label_2": ("@", "label_2", 0)}
MANUAL_SCORED = dict(MANUAL)
MANUAL_SCORED["prompt"] = MANUAL["prompt"][:3] + ({**MANUAL["prompt"][3], **LINKED_LABELS}, None)
MANUAL_SCORED.update(LABEL_NODES)
MANUAL_SCORED.update({
    "dinov2": ("VMDiffLoadDINOv2", 0, 5, {"dinov2": "dinov2-base"}, None),
    "open_clip": ("VMDiffLoadOpenCLIP", 0, 6, {"model_name": "ViT-bigG-14",
                                               "checkpoint": "open_clip_model.safetensors"}, None),
    "grounding_dino": ("VMDiffLoadGroundingDINO", 1, 4, {"checkpoint": "grounding-dino-tiny",
                                                         "config": "GroundingDINO_SwinT_OGC.py (built-in)",
                                                         "bert": "bert-base-uncased"}, None),
    "scorer": ("VMDiffScorer", 2, 4, {
        "dino": ("@", "dinov2", 0), "open_clip": ("@", "open_clip", 0), "image_1": ("@", "image_1", 0),
        "image_2": ("@", "image_2", 0), **LINKED_LABELS, "grounding_dino": ("@", "grounding_dino", 0)},
        "VMDiff Scorer (labels as above)"),
    "score": ("VMDiffSimilarityScore", 5, 4, {"scorer": ("@", "scorer", 0), "images": ("@", "decode", 0)}, None),
    "score_views": ("PreviewImage", 6, 4, {"images": ("@", "score", 3)}, "What the score saw"),
})

# The full VMDiff graph: loaders → Redux encode → fusion prompt → scorer → Auto-Tune (EAA) → saved result with its
# replay parameters, the score-against-α/β plot and the grid of candidates.
FULL = {k: v for k, v in MANUAL_SCORED.items()
        if k not in ("blend", "mix", "decode", "save", "decode_preview", "preview", "score", "score_views")}
FULL.update({
    "auto_tune": ("VMDiffAutoTune", 3, 0, {
        "model": ("@", "unet", 0), "tokens_1": ("@", "tokens_1", 0), "tokens_2": ("@", "tokens_2", 0),
        "conditioning": ("@", "prompt", 0), "vae": ("@", "vae", 0), "scorer": ("@", "scorer", 0)}, None),
    "save": ("VMDiffSaveImage", 4, 0, {"images": ("@", "auto_tune", 0), "params": ("@", "auto_tune", 7),
                                       **on_purpose(NAMED_OUTPUT, filename_prefix="vmdiff_full")}, None),
    "plot": ("PreviewImage", 4, 2, {"images": ("@", "auto_tune", 9)}, "Score against α and β"),
    "grid": ("PreviewImage", 4, 3, {"images": ("@", "auto_tune", 10)}, "Every candidate"),
})

def share_seed(graph: dict, col: int, row: int) -> dict:
    """The graph with one "Seed" primitive linked into every node's seed: the branches of a side-by-side graph
    always run on the same seed."""
    seed = ("PrimitiveInt", col, row, {"value": Default("VMDiffBlendingNoise", "seed")}, "Seed (every branch)")
    seeded = {"VMDiffBlendingNoise", "VMDiffRandomNoise", "VMDiffAutoTune", "VMDiffMagicMix"}
    linked = {k: v[:3] + ({**v[3], "seed": ("@", "seed", 0)} if "seed" in v[3] or v[0] in seeded else v[3], v[4])
              for k, v in graph.items()}
    return {"seed": seed, **linked}


# MagicMix (VMDiffMagicMix) on Flux: layout = image 1 (VAE-encoded), content = image 2's Redux tokens; the σ grid of
# ModelSamplingFlux at 512² is VMDiff's (μ from the size), the fusion prompt gives the pooled vector, FluxGuidance γ.
MAGICMIX_ARGS = on_purpose(ONE_SEED, seed=42)
MAGICMIX_FLUX_NODES = {
    "model_sampling": ("ModelSamplingFlux", 2, 3, {"model": ("@", "unet", 0), "max_shift": 1.15, "base_shift": 0.5,
                                                   "width": 512, "height": 512}, "Flux σ grid at 512² (as VMDiff)"),
    "guidance": ("FluxGuidance", 3, 3, {"conditioning": ("@", "prompt", 0), "guidance": 4.0}, None),
    "magicmix": ("VMDiffMagicMix", 4, 3, {
        "model": ("@", "model_sampling", 0), "content": ("@", "guidance", 0), "layout_image": ("@", "image_1", 0),
        "vae": ("@", "vae", 0), "content_tokens": ("@", "tokens_2", 0), **MAGICMIX_ARGS},
        "MagicMix: layout of image 1, content of image 2"),
    "decode_magicmix": ("VAEDecode", 5, 3, {"samples": ("@", "magicmix", 0), "vae": ("@", "vae", 0)}, None),
    "save_magicmix": ("SaveImage", 6, 3, {"images": ("@", "decode_magicmix", 0),
                                          "filename_prefix": "vmdiff_magicmix_flux"}, None),
}
MAGICMIX_FLUX = {k: MANUAL[k] for k in ("unet", "clip", "clip_vision", "redux", "vae", "image_1", "image_2",
                                        "tokens_2", "prompt")}
MAGICMIX_FLUX.update(MAGICMIX_FLUX_NODES)
# VMDiff (the manual graph) and MagicMix side by side on the same pair, model, prompt and seed.
VMDIFF_VS_MAGICMIX = dict(MANUAL)
VMDIFF_VS_MAGICMIX["save"] = MANUAL["save"][:3] + ({**MANUAL["save"][3], "filename_prefix": "vmdiff"}, "VMDiff")
VMDIFF_VS_MAGICMIX.update(MAGICMIX_FLUX_NODES)
VMDIFF_VS_MAGICMIX["save_magicmix"] = MAGICMIX_FLUX_NODES["save_magicmix"][:3] + (
    {"images": ("@", "decode_magicmix", 0), "filename_prefix": "magicmix"}, "MagicMix")
VMDIFF_VS_MAGICMIX = share_seed(VMDIFF_VS_MAGICMIX, 1, 4)
# MagicMix on SD1.5 (the paper's setting): layout image + text content, CFG 7.5 with a negative, 50 steps.
MAGICMIX_SD15 = {
    "checkpoint": ("CheckpointLoaderSimple", 0, 0, {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}, None),
    "clip": ("CLIPLoader", 0, 1, {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"},
             "CLIP-L: SD1.5's text encoder"),
    "image": ("LoadImage", 0, 2, {"image": EXAMPLE_IMAGES[0]}, "Layout image"),
    "content": ("CLIPTextEncode", 1, 0, {"clip": ("@", "clip", 0), "text": "a photo of a coffee cup"},
                "Content prompt"),
    "negative": ("CLIPTextEncode", 1, 1, {"clip": ("@", "clip", 0), "text": "blurry, low quality"}, "Negative"),
    "magicmix": ("VMDiffMagicMix", 2, 0, {
        "model": ("@", "checkpoint", 0), "content": ("@", "content", 0), "layout_image": ("@", "image", 0),
        "vae": ("@", "checkpoint", 2), "negative": ("@", "negative", 0),
        **MAGICMIX_ARGS, **on_purpose(SD15_PAPER, steps=50, scheduler="normal", cfg=7.5)}, None),
    "decode": ("VAEDecode", 3, 0, {"samples": ("@", "magicmix", 0), "vae": ("@", "checkpoint", 2)}, None),
    "save": ("SaveImage", 4, 0, {"images": ("@", "decode", 0), "filename_prefix": "vmdiff_magicmix_sd15"}, None),
}

# The paper's baselines and what ComfyUI users do today, side by side on one pair, prompt and seed: Baseline 1
# (random ε, no Blending Noise, Mixing Denoise at α 0.5), Baseline 2 (Blending Noise at β = 1 + Mixing Denoise at
# α 0.5, i.e. the manual graph) and two StyleModelApply (Redux) chained on one prompt with core nodes only.
FUSION_TEXT = f"A photo of {EXAMPLE_LABELS[0]} creatively fused with {EXAMPLE_LABELS[1]}."
CORE_TWO_REDUX_NODES = {
    "dual_clip": ("DualCLIPLoader", 0, 5, {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                           "type": "flux"}, "Load CLIP-L + T5 (the usual Flux text path)"),
    "text": ("CLIPTextEncode", 1, 4, {"clip": ("@", "dual_clip", 0), "text": FUSION_TEXT},
             "Fusion prompt (T5 + CLIP-L)"),
    "vision_1": ("CLIPVisionEncode", 2, 4, {"clip_vision": ("@", "clip_vision", 0), "image": ("@", "image_1", 0),
                                            "crop": "none"}, None),
    "vision_2": ("CLIPVisionEncode", 2, 5, {"clip_vision": ("@", "clip_vision", 0), "image": ("@", "image_2", 0),
                                            "crop": "none"}, None),
    "style_1": ("StyleModelApply", 3, 4, {"conditioning": ("@", "text", 0), "style_model": ("@", "redux", 0),
                                          "clip_vision_output": ("@", "vision_1", 0), "strength": 1.0,
                                          "strength_type": "multiply"}, "Redux of image 1"),
    "style_2": ("StyleModelApply", 3, 5, {"conditioning": ("@", "style_1", 0), "style_model": ("@", "redux", 0),
                                          "clip_vision_output": ("@", "vision_2", 0), "strength": 1.0,
                                          "strength_type": "multiply"}, "...then Redux of image 2"),
    "flux_guidance": ("FluxGuidance", 4, 4, {"conditioning": ("@", "style_2", 0), "guidance": 3.5}, None),
    "negative": ("ConditioningZeroOut", 4, 5, {"conditioning": ("@", "text", 0)}, None),
    "empty": ("EmptySD3LatentImage", 4, 6, {"width": 512, "height": 512, "batch_size": 1}, None),
    "ksampler": ("KSampler", 5, 4, {"model": ("@", "unet", 0), "seed": 42, "steps": 20, "cfg": 1.0,
                                    "sampler_name": "euler", "scheduler": "simple",
                                    "positive": ("@", "flux_guidance", 0), "negative": ("@", "negative", 0),
                                    "latent_image": ("@", "empty", 0), "denoise": 1.0}, None),
    "decode_core": ("VAEDecode", 6, 4, {"samples": ("@", "ksampler", 0), "vae": ("@", "vae", 0)}, None),
    "save_core": ("SaveImage", 7, 4, {"images": ("@", "decode_core", 0), "filename_prefix": "core_two_redux"},
                  "Two Redux on one prompt (core nodes)"),
}
CORE_TWO_REDUX = {k: MANUAL[k] for k in ("unet", "clip_vision", "redux", "vae", "image_1", "image_2")}
CORE_TWO_REDUX.update(CORE_TWO_REDUX_NODES)
BASELINES = {k: v for k, v in MANUAL.items() if k not in ("decode_preview", "preview")}
BASELINES["save"] = MANUAL["save"][:3] + ({**MANUAL["save"][3], "filename_prefix": "vmdiff_baseline2"},
                                          "Baseline 2: Blending Noise (β = 1) + Mixing Denoise (α = 0.5)")
BASELINES.update({
    "random_noise": ("VMDiffRandomNoise", 3, 2, {}, "Baseline 1: random ε"),
    "mix_b1": ("VMDiffMixingDenoise", 4, 2, {**MANUAL["mix"][3], "eps_b": ("@", "random_noise", 0)}, None),
    "decode_b1": ("VAEDecode", 5, 2, {"samples": ("@", "mix_b1", 0), "vae": ("@", "vae", 0)}, None),
    "save_b1": ("SaveImage", 6, 2, {"images": ("@", "decode_b1", 0), "filename_prefix": "vmdiff_baseline1"},
                "Baseline 1: random noise + Mixing Denoise (α = 0.5)"),
    **CORE_TWO_REDUX_NODES,
    # the core branch encodes the Fusion Prompt's own text: the labels typed there reach every branch
    "text": CORE_TWO_REDUX_NODES["text"][:3] + ({"clip": ("@", "dual_clip", 0), "text": ("@", "prompt", 1)},
                                               "Fusion prompt text (T5 + CLIP-L)"),
})
BASELINES = share_seed(BASELINES, 1, 4)
# N-object fusion: three objects' token sets mixed by VMDiff Mix Tokens N (order-invariant, weights), its concat
# into Blending Noise and its mix into Mixing Denoise (their tokens_2 left unconnected).
THREE_OBJECTS = {k: MANUAL[k] for k in ("unet", "clip", "clip_vision", "redux", "vae", "image_1", "image_2",
                                        "tokens_1", "tokens_2")}
THREE_OBJECTS.update({
    "image_3": ("LoadImage", 1, 4, {"image": EXAMPLE_IMAGES[2]}, "Object image 3"),
    "tokens_3": ("VMDiffReduxEncode", 2, 2, {"clip_vision": ("@", "clip_vision", 0), "style_model": ("@", "redux", 0),
                                             "image": ("@", "image_3", 0)}, None),
    "prompt": ("VMDiffFusionPrompt", 2, 3, {"clip": ("@", "clip", 0), **on_purpose(
        EXAMPLE_PAIR, label_1=EXAMPLE_LABELS[0], label_2=f"{EXAMPLE_LABELS[1]} and a {EXAMPLE_LABELS[2]}")}, None),
    "mix_n": ("VMDiffMixTokensN", 3, 1, {"tokens_1": ("@", "tokens_1", 0), "tokens_2": ("@", "tokens_2", 0),
                                         "tokens_3": ("@", "tokens_3", 0)}, None),
    "blend": ("VMDiffBlendingNoise", 4, 0, {**{k: v for k, v in MANUAL["blend"][3].items()
                                               if k not in ("tokens_1", "tokens_2")}, "tokens_1": ("@", "mix_n", 1)},
              None),
    "mix": ("VMDiffMixingDenoise", 5, 0, {**{k: v for k, v in MANUAL["mix"][3].items()
                                             if k not in ("tokens_1", "tokens_2")}, "tokens_1": ("@", "mix_n", 0)},
            None),
    "decode": ("VAEDecode", 6, 0, {"samples": ("@", "mix", 0), "vae": ("@", "vae", 0)}, None),
    "save": ("SaveImage", 7, 0, {"images": ("@", "decode", 0), "filename_prefix": "vmdiff_three_objects"}, None),
})

# The model file each loader widget names -> (ComfyUI model folder, download URL): vmdiff_cli/model_downloads.py
# (the CLI checks a models folder against the same list).
from vmdiff_cli.model_downloads import MODEL_DOWNLOADS  # noqa: E402


def model_properties(values: dict) -> list[dict]:
    """properties.models of a loader node: one entry per widget value that names a known model file."""
    return [{"name": v, "url": MODEL_DOWNLOADS[v][1], "directory": MODEL_DOWNLOADS[v][0]}
            for v in values.values() if isinstance(v, str) and v in MODEL_DOWNLOADS]


COLUMN_X = [0, 400, 800, 1200, 1600, 2000, 2400, 2800]  # nodes are 340 wide
ROW_H = 230
IMAGE_NODES = {"LoadImage", "SaveImage", "PreviewImage", "VMDiffSaveImage"}  # they show a picture: keep room for it


def node_height(node: dict) -> int:
    """At least the height the frontend gives a node: litegraph draws 20 px per socket row and ~26 px per widget,
    the Vue node renderer up to ~30 px per widget (measured by scripts/frontend_check.py; the test checks overlaps)."""
    if node["type"] == "Note":  # ~45 characters a line at 340 px
        return max(160, 40 + 18 * sum(1 + len(line) // 45 for line in node["widgets_values"][0].splitlines()))
    sockets = max(len([i for i in node["inputs"] if "widget" not in i]), len(node["outputs"]))
    height = 30 + 20 * sockets + 30 * sum(1 for v in node["widgets_values"] if v not in ("fixed", "image"))
    return max(160, height + (260 if node["type"] in IMAGE_NODES else 0))


def stack_columns(ui_nodes: list[dict], gap: int = 50) -> None:
    """Rows are a wish: within a column a node moves down until it clears the one above it."""
    for x in {n["pos"][0] for n in ui_nodes}:
        bottom = None
        for node in sorted((n for n in ui_nodes if n["pos"][0] == x), key=lambda n: n["pos"][1]):
            if bottom is not None and node["pos"][1] < bottom + gap:
                node["pos"][1] = bottom + gap
            node["size"][1] = node_height(node)
            bottom = node["pos"][1] + node["size"][1]


def node_definitions() -> dict:
    from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

    boot_comfy_inprocess()
    load_pack()

    import nodes
    from vmdiff_pack.nodes import NODES

    classes = dict(nodes.NODE_CLASS_MAPPINGS)
    classes.update({n.define_schema().node_id: n for n in NODES})
    return classes


def _input_spec(cls) -> list[tuple[str, str, dict]]:
    types = cls.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            kind = spec[0] if isinstance(spec[0], str) else "COMBO"
            out.append((name, kind, spec[1] if len(spec) > 1 and spec[1] else {}))
    return out


def _outputs(cls) -> list[tuple[str, str]]:
    types = cls.RETURN_TYPES
    names = getattr(cls, "RETURN_NAMES", None) or types
    return list(zip(names, types))


def declared_default(classes: dict, class_type: str, name: str):
    """The default ``class_type`` declares for its input ``name`` (what the frontend saves for an untouched widget)."""
    spec = classes[class_type].INPUT_TYPES()
    options, *rest = {**spec.get("required", {}), **spec.get("optional", {})}[name]
    opts = rest[0] if rest and rest[0] else {}
    return opts.get("default", options[0] if isinstance(options, list) else None)


def note_text(reasons: dict[str, list[str]]) -> str:
    """The workflow's Note: which widgets it sets away from their declared defaults, and why."""
    return ("Set on purpose in this workflow (every other VMDiff widget is at its declared default, "
            "vmdiff_comfy/stages/settings.py):\n" + "\n".join(f"- {', '.join(names)}: {reason}"
                                                             for reason, names in reasons.items()))


def build_ui(graph: dict, classes: dict) -> dict:
    ids = {key: i + 1 for i, key in enumerate(graph)}
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    reasons: dict[str, list[str]] = {}
    for key, (class_type, col, row, values, title) in graph.items():
        cls = classes[class_type]
        purposes = {name: v.reason for name, v in values.items() if isinstance(v, OnPurpose)}
        values = {name: v.value if isinstance(v, OnPurpose) else v for name, v in values.items()}
        values = {name: declared_default(classes, v.class_type, v.name) if isinstance(v, Default) else v
                  for name, v in values.items()}
        for name, value in values.items():
            if name in purposes:
                reasons.setdefault(purposes[name], []).append(f"{title or class_type} {name} = {value!r}")
        inputs, widgets = [], []
        for name, kind, opts in _input_spec(cls):
            value = values.get(name)
            widget = kind in PRIMITIVES and not opts.get("forceInput")  # forceInput: a socket only
            if isinstance(value, tuple):
                link_id = len(links) + 1
                src = ids[value[1]]
                src_cls = classes[graph[value[1]][0]]
                link_type = _outputs(src_cls)[value[2]][1]
                links.append([link_id, src, value[2], ids[key], len(inputs), link_type])
                out_links.setdefault((src, value[2]), []).append(link_id)
                entry = {"name": name, "type": kind, "link": link_id}
                if widget:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
            if widget:  # a linked widget keeps its (unused) value too: widgets_values is positional
                if isinstance(value, tuple):  # shown as the primitive's value, or the widget's default
                    value = graph[value[1]][3].get("value") if graph[value[1]][0].startswith("Primitive") else None
                    if isinstance(value, Default):
                        value = declared_default(classes, value.class_type, value.name)
                if value is None:  # not set in the description: the widget's default, as the frontend saves it
                    value = declared_default(classes, class_type, name)
                widgets.append(value)
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
                if opts.get("image_upload"):
                    widgets.append("image")
            elif value is None and name not in cls.INPUT_TYPES().get("optional", {}):
                raise ValueError(f"{key}.{name} ({kind}) is not connected")
        node = {"id": ids[key], "type": class_type, "pos": [COLUMN_X[col], row * ROW_H], "size": [340, 160],
                "flags": {}, "order": 0, "mode": 0, "inputs": inputs, "outputs": [],
                "properties": {"Node name for S&R": class_type}, "widgets_values": widgets}
        if title:
            node["title"] = title
        if model_properties(values):
            node["properties"]["models"] = model_properties(values)
        if purposes:
            node["properties"]["vmdiff_on_purpose"] = purposes
        ui_nodes.append(node)
    if reasons:  # a Note (frontend only: not in the API twin) in the first column, below the loaders
        ui_nodes.append({"id": len(ui_nodes) + 1, "type": "Note", "pos": [COLUMN_X[0], 9 * ROW_H], "size": [340, 160],
                         "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [],
                         "properties": {}, "widgets_values": [note_text(reasons)], "title": "Set on purpose"})
    for node in ui_nodes:
        if node["type"] in classes:
            outputs = _outputs(classes[node["type"]])
            node["outputs"] = [{"name": name, "type": kind, "links": out_links.get((node["id"], slot), []),
                                "slot_index": slot} for slot, (name, kind) in enumerate(outputs)]
    order = _topological_order([n for n in ui_nodes if n["type"] in classes], links)
    for node in ui_nodes:
        node["order"] = order.get(node["id"], len(order))  # the Note last
    stack_columns(ui_nodes)
    return {"last_node_id": len(ui_nodes), "last_link_id": len(links), "nodes": ui_nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.6, "offset": [40, 40]}}, "version": 0.4}


def _topological_order(ui_nodes, links) -> dict[int, int]:
    deps = {n["id"]: {link[1] for link in links if link[3] == n["id"]} for n in ui_nodes}
    order, done = {}, set()
    while len(done) < len(deps):
        for node_id in sorted(deps):
            if node_id not in done and deps[node_id] <= done:
                order[node_id] = len(done)
                done.add(node_id)
    return order


GRAPHS = {"vmdiff_manual": MANUAL}
GRAPHS.update(vmdiff_magicmix_flux=MAGICMIX_FLUX, vmdiff_magicmix_sd15=MAGICMIX_SD15,
              vmdiff_vs_magicmix=VMDIFF_VS_MAGICMIX)
GRAPHS.update(vmdiff_manual_scored=MANUAL_SCORED, vmdiff_full=FULL)
GRAPHS.update(vmdiff_baselines=BASELINES, core_two_redux=CORE_TWO_REDUX, vmdiff_three_objects=THREE_OBJECTS)

# Part-level fusion: the manual graph's plain Mixing Denoise beside one with an α map made by core mask nodes (a
# solid 0 mask with its top half set to 1: alpha_masked (image 2) at the top, alpha (image 1) below), and the map.
REGIONAL = {k: v for k, v in MANUAL.items() if k not in ("decode_preview", "preview")}
REGIONAL["save"] = MANUAL["save"][:3] + ({**MANUAL["save"][3], "filename_prefix": "vmdiff_plain"},
                                         "Plain fusion (one global α)")
REGIONAL.update({
    "mask_base": ("SolidMask", 3, 2, {"value": 0.0, "width": 512, "height": 512}, "α map: 0 = alpha"),
    "mask_top": ("SolidMask", 3, 3, {"value": 1.0, "width": 512, "height": 256}, "Top half: 1 = alpha_masked"),
    "mask": ("MaskComposite", 4, 2, {"destination": ("@", "mask_base", 0), "source": ("@", "mask_top", 0), "x": 0,
                                     "y": 0, "operation": "add"}, None),
    "mask_preview": ("MaskPreview", 5, 4, {"mask": ("@", "mask", 0)}, "The α map (white = alpha_masked)"),
    "mix_regional": ("VMDiffMixingDenoise", 4, 3, {
        **MANUAL["mix"][3], "mask": ("@", "mask", 0),
        **on_purpose("α apart inside and outside the mask, so the two parts show", alpha=0.2, alpha_masked=0.8)},
        "Mixing Denoise with an α map"),
    "decode_regional": ("VAEDecode", 5, 2, {"samples": ("@", "mix_regional", 0), "vae": ("@", "vae", 0)}, None),
    "save_regional": ("SaveImage", 6, 2, {"images": ("@", "decode_regional", 0), "filename_prefix": "vmdiff_regional"},
                      "Part-level fusion: image 2 on top, image 1 below"),
})
GRAPHS.update(vmdiff_regional=REGIONAL)


# Reference-image models (FLUX.1 Kontext, FLUX.2): the same graphs with Redux Encode swapped for VMDiff Reference
# Encode (the model's
# VAE → reference latents, weighed by attention biases: β in Blending Noise, α in Mixing Denoise), the fusion prompt
# encoded by the model's own text encoder, and core's own two-reference sampling beside it on the same seed and prompt.
REFERENCE_SIZE = "1024² as the model's own reference templates (the references are scaled to about 1 MP)"
REFERENCE_CONTEXT = "reference-image models read the prompt's text tokens; the images travel as reference latents"
KONTEXT_GUIDANCE = "Kontext's own guidance (its template: FluxGuidance 2.5); families.FAMILY_DEFAULTS"
KLEIN_DISTILLED = "FLUX.2 [klein] distilled: 4 steps, no guidance embedding (families.FAMILY_DEFAULTS)"


def reference_graph(model_file: str, clip: tuple, vae_file: str, stages: dict, core: dict, prefix: str) -> dict:
    """Loaders, two object images scaled to about 1 MP (as core's reference templates), their reference latents,
    the fusion prompt, Blending Noise → Mixing Denoise → decode, and ``core`` (node key → description) beside."""
    graph = {
        "unet": ("UNETLoader", 0, 0, {"unet_name": model_file, "weight_dtype": "default"}, None),
        "clip": clip,
        "vae": ("VAELoader", 0, 2, {"vae_name": vae_file}, None),
        "image_1": ("LoadImage", 1, 0, {"image": EXAMPLE_IMAGES[0]}, "Object image 1"),
        "image_2": ("LoadImage", 1, 2, {"image": EXAMPLE_IMAGES[1]}, "Object image 2"),
        "scaled_1": ("ImageScaleToTotalPixels", 2, 0, {"image": ("@", "image_1", 0), "upscale_method": "lanczos",
                                                       "megapixels": 1.0, "resolution_steps": 1}, None),
        "scaled_2": ("ImageScaleToTotalPixels", 2, 1, {"image": ("@", "image_2", 0), "upscale_method": "lanczos",
                                                       "megapixels": 1.0, "resolution_steps": 1}, None),
        "tokens_1": ("VMDiffReferenceEncode", 3, 0, {"vae": ("@", "vae", 0), "image": ("@", "scaled_1", 0)}, None),
        "tokens_2": ("VMDiffReferenceEncode", 3, 1, {"vae": ("@", "vae", 0), "image": ("@", "scaled_2", 0)}, None),
        "prompt": ("VMDiffFusionPrompt", 2, 2, {"clip": ("@", "clip", 0), **on_purpose(
            EXAMPLE_PAIR, label_1=EXAMPLE_LABELS[0], label_2=EXAMPLE_LABELS[1])}, None),
        "blend": ("VMDiffBlendingNoise", 4, 0, {
            "model": ("@", "unet", 0), "tokens_1": ("@", "tokens_1", 0), "tokens_2": ("@", "tokens_2", 0),
            "conditioning": ("@", "prompt", 0), **on_purpose(REFERENCE_SIZE, width=1024, height=1024),
            **on_purpose(REFERENCE_CONTEXT, context="text_and_references"), **stages["blend"]}, None),
        "mix": ("VMDiffMixingDenoise", 5, 0, {
            "model": ("@", "unet", 0), "eps_b": ("@", "blend", 0), "tokens_1": ("@", "tokens_1", 0),
            "tokens_2": ("@", "tokens_2", 0), "conditioning": ("@", "prompt", 0),
            **on_purpose(REFERENCE_CONTEXT, context="text_and_references"), **stages["mix"]},
            "VMDiff Mixing Denoise (α)"),
        "decode": ("VAEDecode", 6, 0, {"samples": ("@", "mix", 0), "vae": ("@", "vae", 0)}, None),
        "save": ("SaveImage", 7, 0, {"images": ("@", "decode", 0), "filename_prefix": prefix}, "VMDiff fusion"),
        "latent_1": ("VAEEncode", 3, 3, {"pixels": ("@", "scaled_1", 0), "vae": ("@", "vae", 0)}, None),
        "latent_2": ("VAEEncode", 3, 4, {"pixels": ("@", "scaled_2", 0), "vae": ("@", "vae", 0)}, None),
        "ref_1": ("ReferenceLatent", 4, 3, {"conditioning": ("@", "prompt", 0), "latent": ("@", "latent_1", 0)},
                  "Core: reference 1"),
        "ref_2": ("ReferenceLatent", 4, 4, {"conditioning": ("@", "ref_1", 0), "latent": ("@", "latent_2", 0)},
                  "Core: reference 2"),
    }
    graph.update(core)
    graph["decode_core"] = ("VAEDecode", 6, 3, {"samples": ("@", "core_sample", 0), "vae": ("@", "vae", 0)}, None)
    graph["save_core"] = ("SaveImage", 7, 3, {"images": ("@", "decode_core", 0), "filename_prefix": f"{prefix}_core"},
                          "Core two-reference sampling (same seed, prompt)")
    return graph


# FLUX.1 Kontext [dev] (ComfyUI 0.8.0): stage defaults of families.FAMILY_DEFAULTS["flux1_kontext"]; core beside as
# its own Kontext template samples (FluxGuidance 2.5, KSampler euler / simple, 20 steps, cfg 1).
KONTEXT = reference_graph(
    "flux1-dev-kontext_fp8_scaled.safetensors",
    ("DualCLIPLoader", 0, 1, {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                              "type": "flux"}, None),
    "ae.safetensors",
    {"blend": on_purpose(KONTEXT_GUIDANCE, guidance_denoise=3.1), "mix": on_purpose(KONTEXT_GUIDANCE, guidance=2.5)},
    {"core_guidance": ("FluxGuidance", 5, 3, {"conditioning": ("@", "ref_2", 0), "guidance": 2.5}, None),
     "core_negative": ("ConditioningZeroOut", 5, 4, {"conditioning": ("@", "prompt", 0)}, None),
     "core_empty": ("EmptySD3LatentImage", 4, 5, {"width": 1024, "height": 1024, "batch_size": 1}, None),
     "core_sample": ("KSampler", 5, 5, {"model": ("@", "unet", 0), "seed": 42, "steps": 20, "cfg": 1.0,
                                        "sampler_name": "euler", "scheduler": "simple",
                                        "positive": ("@", "core_guidance", 0), "negative": ("@", "core_negative", 0),
                                        "latent_image": ("@", "core_empty", 0), "denoise": 1.0}, None)},
    "vmdiff_kontext")
KONTEXT = share_seed(KONTEXT, 1, 4)

# FLUX.2 [klein] 4B distilled (Apache-2.0; ComfyUI from about 0.9.2): 4 steps, no guidance embedding
# (families.FAMILY_DEFAULTS["flux2_klein"]); core beside: RandomNoise, Flux2Scheduler, euler, BasicGuider.
FLUX2_CORE = {
    "core_noise": ("RandomNoise", 5, 3, {"noise_seed": 42}, None),
    "core_guider": ("BasicGuider", 5, 4, {"model": ("@", "unet", 0), "conditioning": ("@", "ref_2", 0)}, None),
    "core_sampler": ("KSamplerSelect", 4, 5, {"sampler_name": "euler"}, None),
    "core_sigmas": ("Flux2Scheduler", 4, 6, {"steps": 4, "width": 1024, "height": 1024}, None),
    "core_empty": ("EmptyFlux2LatentImage", 4, 7, {"width": 1024, "height": 1024, "batch_size": 1}, None),
    "core_sample": ("SamplerCustomAdvanced", 5, 5, {"noise": ("@", "core_noise", 0), "guider": ("@", "core_guider", 0),
                                                    "sampler": ("@", "core_sampler", 0),
                                                    "sigmas": ("@", "core_sigmas", 0),
                                                    "latent_image": ("@", "core_empty", 0)}, None),
}
FLUX2_CLIP = ("CLIPLoader", 0, 1, {"clip_name": "qwen_3_4b.safetensors", "type": "flux2"}, None)
FLUX2_STAGES = {"blend": on_purpose(KLEIN_DISTILLED, steps=4, t_den_step=2, guidance_denoise=0.0),
                "mix": on_purpose(KLEIN_DISTILLED, guidance=0.0, steps=4)}
FLUX2 = share_seed(reference_graph("flux-2-klein-4b-fp8.safetensors", FLUX2_CLIP, "flux2-vae.safetensors",
                                   FLUX2_STAGES, FLUX2_CORE, "vmdiff_flux2"), 1, 4)

# Auto-Tune on FLUX.2 [klein]: the full graph's scorer and search on reference images.
FLUX2_AUTO_TUNE = {k: v for k, v in reference_graph("flux-2-klein-4b-fp8.safetensors", FLUX2_CLIP,
                                                    "flux2-vae.safetensors", FLUX2_STAGES, {}, "vmdiff_flux2").items()
                   if k in ("unet", "clip", "vae", "image_1", "image_2", "scaled_1", "scaled_2", "tokens_1",
                            "tokens_2")}
FLUX2_AUTO_TUNE.update({k: v for k, v in FULL.items() if k in ("dinov2", "open_clip", "grounding_dino", "scorer",
                                                               "label_1", "label_2", "plot", "grid")})
FLUX2_AUTO_TUNE["prompt"] = ("VMDiffFusionPrompt", 2, 2, {"clip": ("@", "clip", 0), **LINKED_LABELS}, None)
FLUX2_AUTO_TUNE["auto_tune"] = ("VMDiffAutoTune", 4, 0, {
    **FULL["auto_tune"][3], **on_purpose(KLEIN_DISTILLED, steps=4, t_den_step=2, guidance_denoise=0.0, guidance=0.0),
    **on_purpose(REFERENCE_CONTEXT, context="text_and_references"),
    **on_purpose(REFERENCE_SIZE, width=1024, height=1024)}, None)
FLUX2_AUTO_TUNE["save"] = ("VMDiffSaveImage", 5, 0, {"images": ("@", "auto_tune", 0), "params": ("@", "auto_tune", 7),
                                                     **on_purpose(NAMED_OUTPUT,
                                                                  filename_prefix="vmdiff_flux2_auto_tune")}, None)
FLUX2_AUTO_TUNE["plot"] = FULL["plot"][:1] + (5, 2) + FULL["plot"][3:]
FLUX2_AUTO_TUNE["grid"] = FULL["grid"][:1] + (5, 3) + FULL["grid"][3:]
FLUX2_AUTO_TUNE["scorer"] = FULL["scorer"][:1] + (3, 4) + FULL["scorer"][3:]
GRAPHS.update(vmdiff_kontext=KONTEXT, vmdiff_flux2=FLUX2, vmdiff_flux2_auto_tune=FLUX2_AUTO_TUNE)


def write_api_twins(names) -> None:
    """The API form of each UI workflow, converted with the object_info of a real (model-less) ComfyUI server."""
    from vmdiff_cli.comfy_server import ComfyServer
    from vmdiff_cli.workflow_convert import ui_to_api

    with ComfyServer(None) as server:
        info = server.object_info()
        for name in names:
            api = ui_to_api(json.loads((WORKFLOWS / f"{name}.json").read_text()), info)
            path = WORKFLOWS / "api" / f"{name}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(api, indent=1) + "\n")
            print("wrote", path.relative_to(REPO_ROOT))


def main() -> int:
    classes = node_definitions()
    for name, graph in GRAPHS.items():
        path = WORKFLOWS / f"{name}.json"
        path.write_text(json.dumps(build_ui(graph, classes), indent=1) + "\n")
        print("wrote", path.relative_to(REPO_ROOT))
    write_api_twins(GRAPHS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
