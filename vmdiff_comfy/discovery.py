"""How users find the pack's nodes in a 2026 node library: the newer ``io.Schema`` fields, declared in one place and
set only where the running ComfyUI's Schema has them.

ComfyUI after 0.8.0 added Schema fields that its frontend searches and groups by (``search_aliases``: extra words
the node search matches; ``essentials_category``: the frontend's Essentials tab, e.g. ``generate-image``; see
../shared/docs/comfyui_2026_notes.md). 0.8.0's Schema has none of them: ``with_discovery`` then leaves the schema
as it is, so 0.8.0 loads the pack unchanged. Which fields the running Schema has is read from its dataclass fields
(feature detection, no version check).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect

#: what a user types looking for "fuse two objects" shared by the fusion nodes
FUSION_ALIASES = ("fuse", "blend", "mix objects", "hybrid", "chimera", "merge two images")

#: node id -> {newer Schema field: value}; the one place these are declared
DISCOVERY: dict[str, dict] = {
    "VMDiffMixingDenoise": {"search_aliases": [*FUSION_ALIASES, "MDeNoise", "mixing denoise", "alpha mix"],
                            "essentials_category": "generate-image"},
    "VMDiffBlendingNoise": {"search_aliases": [*FUSION_ALIASES, "BNoise", "blended noise", "semantic noise"]},
    "VMDiffAutoTune": {"search_aliases": [*FUSION_ALIASES, "EAA", "auto tune", "search alpha beta"],
                       "essentials_category": "generate-image"},
    "VMDiffReduxEncode": {"search_aliases": ["redux tokens", "image tokens", "object image", "SigLIP"]},
    "VMDiffReferenceEncode": {"search_aliases": ["reference latent", "reference image", "Kontext", "FLUX.2",
                                                 "object image"]},
    "VMDiffFusionPrompt": {"search_aliases": ["fusion prompt", "two labels", "hybrid prompt"]},
    "VMDiffMixTokensN": {"search_aliases": [*FUSION_ALIASES, "three objects", "four objects", "N objects"]},
    "VMDiffMagicMix": {"search_aliases": ["MagicMix", "semantic mixing", "layout content mix", *FUSION_ALIASES]},
    "VMDiffScorer": {"search_aliases": ["fusion score", "DINOv2 OpenCLIP score", "hybrid quality"]},
    "VMDiffSimilarityScore": {"search_aliases": ["fusion score", "similarity", "hybrid quality"]},
    "VMDiffRandomNoise": {"search_aliases": ["baseline 1", "random epsilon"]},
    "VMDiffSaveImage": {"search_aliases": ["save fusion", "save with parameters"]},
    "VMDiffStageSettings": {"search_aliases": ["shared settings", "steps guidance"]},
}


def schema_fields(schema_cls) -> set[str]:
    """The field names ``schema_cls`` (ComfyUI's ``io.Schema`` or any subclass) accepts: its dataclass fields, else
    its constructor's keyword parameters."""
    if dataclasses.is_dataclass(schema_cls):
        return {f.name for f in dataclasses.fields(schema_cls)}
    return {n for n, p in inspect.signature(schema_cls).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def supported(node_id: str, schema_cls) -> dict:
    """The fields declared for ``node_id`` that ``schema_cls`` has (empty on ComfyUI 0.8.0)."""
    have = schema_fields(schema_cls)
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in DISCOVERY.get(node_id, {}).items()
            if k in have}


def apply_discovery(schema):
    """``schema`` with its node's declared fields set, for those its class has; returns it (changed in place)."""
    for name, value in supported(schema.node_id, type(schema)).items():
        setattr(schema, name, value)
    return schema


def with_discovery(node):
    """Make ``node.define_schema`` return its schema with the newer fields applied (``apply_discovery``). Returns
    ``node`` (changed in place; idempotent)."""
    if vars(node).get("_vmdiff_discovery"):
        return node
    define = node.define_schema.__func__

    @functools.wraps(define)
    def define_schema(cls):
        return apply_discovery(define(cls))

    node.define_schema = classmethod(define_schema)
    node._vmdiff_discovery = True
    return node
