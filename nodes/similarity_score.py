"""VMDiff Scorer and VMDiff Similarity Score: the nodes of the paper's Similarity Score S (docs/method.md); the scorer
itself is vmdiff_comfy/scoring/similarity.py."""
from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..vmdiff_comfy.scoring.similarity import (ISOLATION_MODES, QUERY_MODES, RESIZE_MODES, SOURCE_RESIZE_MODES,
                                               ScoreOptions, SimilarityScorer, format_breakdown)
from ..vmdiff_comfy.scoring.sockets import DinoType, GroundingDinoType, OpenClipType, SamType
from ..vmdiff_ops import score as score_ops
from ..vmdiff_comfy.errors import VMDiffInputError, guard_inputs
from ..vmdiff_comfy.stages.checks import check_finite_output
from ..vmdiff_comfy.stages.sockets import ScorerType
from ..vmdiff_comfy.discovery import with_discovery


@with_discovery
@guard_inputs
class VMDiffScorer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffScorer",
            display_name="VMDiff Scorer",
            category="VMDiff/score",
            description="Prepares the Similarity Score for a pair: isolates the objects of the two source images, "
                        "encodes them with DINOv2 and the two labels with OpenCLIP, once. Feed it to VMDiff "
                        "Similarity Score or Auto-Tune.",
            inputs=[
                io.MultiType.Input(DinoType.Input("dino", tooltip="VMDiff Load DINOv2 (dinov2-base: the reference), "
                                                                  "or a DINOv2-large/giant from Load CLIP Vision "
                                                                  "(runs at 518 px: a different metric)."),
                                   types=[io.ClipVision]),
                OpenClipType.Input("open_clip", tooltip="VMDiff Load OpenCLIP (ViT-bigG-14 laion2b_s39b_b160k), or "
                                                        "VMDiff CLIP from ComfyUI (clip_vision_g + clip_g)."),
                io.Image.Input("image_1", tooltip="Source image 1 (first image of the batch)."),
                io.Image.Input("image_2", tooltip="Source image 2."),
                io.String.Input("label_1", default="owl", tooltip="What image 1 shows (T1)."),
                io.String.Input("label_2", default="jar", tooltip="What image 2 shows (T2)."),
                io.Combo.Input("isolation", options=list(ISOLATION_MODES), default="box",
                               tooltip="box: crop to GroundingDINO's top-1 box (the reference); sam: box → SAM mask, "
                                       "background neutral grey, then the box crop (the paper); none: whole image.",
                               optional=True),
                io.Combo.Input("detection_query", options=list(QUERY_MODES), default=QUERY_MODES[0],
                               tooltip="GroundingDINO caption: the reference's fixed query, or the labels (paper).",
                               optional=True),
                io.Combo.Input("label_text", options=list(score_ops.LABEL_TEXT_MODES), default="official",
                               tooltip="Text CLIP embeds: official = \"['A  X .']\" (the reference's str(list) "
                                       "quirk), reference = \"A  X .\", plain = \"X\".", optional=True),
                io.Combo.Input("resize", options=list(RESIZE_MODES), default="squash",
                               tooltip="Encoder input: squash to 224² with no centre crop (reference) or the "
                                       "libraries' resize + centre crop.", optional=True),
                io.Combo.Input("source_resize", options=list(SOURCE_RESIZE_MODES), default="none",
                               tooltip="nearest_512: resize the sources to 512² with NEAREST first (parity).",
                               optional=True),
                io.Float.Input("box_threshold", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="GroundingDINO box threshold; no box above it → the whole image is used.",
                               optional=True),
                io.Int.Input("detect_size", default=800, min=64, max=2048, step=8,
                             tooltip="GroundingDINO input, shorter side (reference 800, longer side ≤ 1333).",
                             optional=True),
                GroundingDinoType.Input("grounding_dino", optional=True, tooltip="Needed for isolation box / sam."),
                SamType.Input("sam", optional=True, tooltip="Needed for isolation sam."),
            ],
            outputs=[ScorerType.Output(display_name="scorer"), io.Image.Output(display_name="source_views")],
        )

    @classmethod
    def execute(cls, dino, open_clip, image_1, image_2, label_1, label_2, isolation="box",
                detection_query=QUERY_MODES[0], label_text="official", resize="squash", source_resize="none",
                box_threshold=0.25, detect_size=800, grounding_dino=None, sam=None) -> io.NodeOutput:
        options = ScoreOptions(isolation=isolation, query=detection_query, label_text=label_text, resize=resize,
                               source_resize=source_resize, box_threshold=box_threshold, detect_short_side=detect_size)
        scorer = SimilarityScorer(dino, open_clip, grounding_dino, sam, image_1, image_2, label_1, label_2, options)
        return io.NodeOutput(scorer, scorer.preview([]), ui=ui.PreviewText(scorer.describe()))


@with_discovery
class VMDiffSimilarityScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffSimilarityScore",
            display_name="VMDiff Similarity Score",
            category="VMDiff/score",
            description="S = 2·min(D1, D2) + 2·min(n1, n2) of fused images: D = DINOv2 similarity to each source, "
                        "n = normalised OpenCLIP similarity to each label. A batch is scored in one pass.",
            inputs=[
                ScorerType.Input("scorer", tooltip="VMDiff Scorer."),
                io.Image.Input("images", tooltip="Fused image(s), e.g. VAE Decode of Mixing Denoise."),
            ],
            outputs=[
                io.Float.Output(display_name="score"),
                io.String.Output(display_name="scores_json"),
                io.String.Output(display_name="breakdown"),
                io.Image.Output(display_name="views"),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, scorer, images) -> io.NodeOutput:
        if not callable(getattr(scorer, "score", None)):
            raise VMDiffInputError(f"scorer: expected a VMDiff Scorer output, got {type(scorer).__name__}")
        results = scorer.score(images)  # refuses non-finite images by name
        check_finite_output("VMDiff Similarity Score", "the score", [r["score"] for r in results],
                            fix="the images are finite, so a scorer model overflowed: run its loaders in float32 "
                                "(ComfyUI without --force-fp16 / --fp16-* flags)")
        breakdown = format_breakdown(results)
        views = scorer.preview() if isinstance(scorer, SimilarityScorer) else images[..., :3]
        return io.NodeOutput(results[0]["score"], json.dumps(results), breakdown, views, ui=ui.PreviewText(breakdown))
