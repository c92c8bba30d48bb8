"""The paper's Similarity Score S (docs/method.md) of fused images: the ``VMDIFF_SCORER`` value.

``VMDIFF_SCORER`` is the contract with Auto-Tune: an object with ``score(images) -> list[dict]`` where ``images`` is a
ComfyUI IMAGE (B, H, W, C) in [0, 1] and each dict holds floats ``score, D1, D2, T1, T2, n1, n2`` (plus ``box``,
``box_confidence``). The sources' DINO features and the labels' CLIP text features are computed once, when the
scorer is made; each ``score`` call encodes each fused image once (one batched call per model).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...vmdiff_ops import score as score_ops
from ..errors import VMDiffInputError
from ..labels import clean_label, label_too_long
from ..stages.checks import image_input
from .dino import dino_encoder
from .scorer import ScorerModel

ISOLATION_MODES = ("box", "sam", "none")
QUERY_MODES = ("most prominent object", "labels")
RESIZE_MODES = ("squash", "center_crop")
SOURCE_RESIZE_MODES = ("none", "nearest_512")
PREVIEW_SIZE = 224


@dataclass(frozen=True)
class ScoreOptions:
    """Defaults are the reference's (run_single.py:64-77, src/flux/get_sim.py), except ``source_resize`` (its NEAREST
    512² squash of the sources is a parity knob, off by default like the Redux Encode node's). The reference's
    text_threshold (0.25) only names phrases, never moves the box, so it has no option here."""

    isolation: str = "box"                       # none | box (GroundingDINO top-1) | sam (box → SAM mask)
    query: str = "most prominent object"         # detection caption, or "labels" (the paper's Grounded-SAM)
    label_text: str = "official"                 # see vmdiff_ops.score.label_text
    resize: str = "squash"                       # encoder input: squash to 224² (reference) or centre crop
    source_resize: str = "none"                  # nearest_512: the reference's NEAREST 512² resize of the sources
    box_threshold: float = 0.25
    nms_iou: float = 0.8
    detect_short_side: int = 800                 # GroundingDINO input: shorter side (reference 800, max 1333)
    t_low: float = score_ops.T_LOW
    t_high: float = score_ops.T_HIGH

    def check(self) -> None:
        for name, value, allowed in (("isolation", self.isolation, ISOLATION_MODES), ("query", self.query, QUERY_MODES),
                                     ("label_text", self.label_text, score_ops.LABEL_TEXT_MODES),
                                     ("resize", self.resize, RESIZE_MODES),
                                     ("source_resize", self.source_resize, SOURCE_RESIZE_MODES)):
            if value not in allowed:
                raise VMDiffInputError(f"{name}: unknown value {value!r}; expected one of {allowed}")


def image_to_bchw(image: torch.Tensor, input_name: str) -> torch.Tensor:
    """ComfyUI IMAGE (B, H, W, C) → (B, 3, H, W) float in [0, 1]; alpha dropped, grey repeated."""
    image = image_input(input_name, image)
    if not torch.isfinite(image).all():
        bad = int((~torch.isfinite(image)).sum())
        raise VMDiffInputError(f"{input_name}: {bad} pixel values are NaN or infinite; the image is broken (often a "
                               f"fp16/fp8 model overflowing: load it with weight_dtype default or fp32), not scored")
    rgb = image[..., :3] if image.shape[-1] >= 3 else image.expand(*image.shape[:-1], 3)
    return rgb.movedim(-1, 1).float().clamp(0.0, 1.0).cpu()


def check_label_texts(clip, texts: list[str], mode: str) -> None:
    """Each label's CLIP text (``texts[k]``, the label in the ``mode`` wrapper) must fit the window of ``clip``'s
    tokenizer (``text_token_count``; an encoder without it is not checked): OpenCLIP would silently read only the
    first 77 tokens. Raises VMDiffInputError naming label_1 / label_2 and by how many tokens it is too long."""
    count = getattr(clip, "text_token_count", None)
    if not callable(count):
        return
    for k, text in enumerate(texts, start=1):
        total, window = count(text)
        if total > window:
            raise VMDiffInputError(label_too_long(
                f"label_{k}", total - window, total, window, "the Scorer's CLIP text of it",
                f" (label_text {mode!r}: {text[:60]!r}{'…' if len(text) > 60 else ''}, counted with its tokenizer)"))


class SimilarityScorer:
    """Scores fused images against two sources and two labels (the VMDIFF_SCORER value)."""

    def __init__(self, dino, clip, detector, segmenter, image_1, image_2, label_1: str, label_2: str,
                 options: ScoreOptions = ScoreOptions()):
        options.check()
        if options.isolation in ("box", "sam") and detector is None:
            raise VMDiffInputError(f"grounding_dino: isolation {options.isolation!r} needs a GroundingDINO model "
                                   f"(VMDiff Load GroundingDINO), or choose isolation 'none'")
        if options.isolation == "sam" and segmenter is None:
            raise VMDiffInputError("sam: isolation 'sam' needs a SAM model (VMDiff Load SAM), or choose 'box'")
        self.labels = (clean_label("label_1", label_1), clean_label("label_2", label_2))
        self.texts = [score_ops.label_text(label, options.label_text) for label in self.labels]
        check_label_texts(clip, self.texts, options.label_text)
        self.dino, self.clip, self.detector, self.segmenter = dino_encoder(dino), clip, detector, segmenter
        self.options = options
        self.score_calls = 0

        self.source_views, self.source_info = [], []
        for k, (image, label) in enumerate(zip((image_1, image_2), self.labels), start=1):
            (view, info), = self._isolate(self._prepare_source(image, f"image_{k}"), self._caption(label))
            self.source_views.append(view)
            self.source_info.append(info)
        self.source_features = self.dino.encode(self.source_views, options.resize)  # (2, C): once per scorer
        self.label_features = self.clip.encode_texts(self.texts)             # (2, E): once per scorer

    # -- isolation ---------------------------------------------------------------------------------
    def _caption(self, *labels: str) -> str:
        if self.options.query == "labels":
            return " . ".join(labels) + " ."
        return self.options.query

    def _prepare_source(self, image: torch.Tensor, input_name: str) -> torch.Tensor:
        x = image_to_bchw(image, input_name)
        if x.shape[0] != 1:
            raise VMDiffInputError(f"{input_name}: got a batch of {x.shape[0]} images; a source is one image")
        if self.options.source_resize == "nearest_512":
            x = F.interpolate(x, size=(512, 512), mode="nearest")
        return x

    def _isolate(self, images: torch.Tensor, caption: str) -> list[tuple[torch.Tensor, dict]]:
        """Per image: the view the encoders see (crop of the object, background filled in ``sam`` mode) and what
        was found. One batched detector call and one batched SAM call for the whole batch."""
        mode = self.options.isolation
        if mode == "none":
            return [(img, {"box": None, "box_confidence": None}) for img in images]
        found = self.detector.detect(images, caption, self.options.box_threshold, self.options.nms_iou,
                                     self.options.detect_short_side)
        h, w = images.shape[-2:]
        boxes = [None if box is None else score_ops.crop_bounds(box, w, h) for box, _ in found]  # int pixels
        if mode == "sam":
            images = score_ops.neutral_fill(images, self.segmenter.segment(images, boxes))
        results = []
        for img, box, (_, conf) in zip(images, boxes, found):
            info = {"box": list(box) if box else None, "box_confidence": round(conf, 4) if box else None}
            results.append((score_ops.crop_to_box(img, box), info))
        return results

    # -- the protocol ------------------------------------------------------------------------------
    def score(self, images: torch.Tensor) -> list[dict]:
        """S and its terms for each image of a fused IMAGE batch: one detector / SAM / DINO / CLIP call each."""
        x = image_to_bchw(images, "images")
        self.score_calls += 1
        isolated = self._isolate(x, self._caption(*self.labels))
        views = [view for view, _ in isolated]
        self.last_views = views
        dino = self.dino.encode(views, self.options.resize)
        clip = self.clip.encode_images(views, self.options.resize)
        d1, d2 = (score_ops.cosine_similarity(dino, self.source_features[k:k + 1]) for k in (0, 1))
        t1, t2 = (score_ops.cosine_similarity(clip, self.label_features[k:k + 1]) for k in (0, 1))
        terms = score_ops.similarity_score(d1, d2, t1, t2, self.options.t_low, self.options.t_high)
        return [dict({k: float(v[i]) for k, v in terms.items()}, **info) for i, (_, info) in enumerate(isolated)]

    @property
    def encoder_calls(self) -> dict:
        """How often each model ran and on how many images (sources and labels included)."""
        counts = {m.kind: {"calls": m.calls, "images": m.images}
                  for m in (self.dino, self.clip, self.detector, self.segmenter) if isinstance(m, ScorerModel)}
        counts["clip_text"] = {"calls": self.clip.text_calls, "texts": self.clip.text_calls and len(self.texts)}
        counts["score"] = {"calls": self.score_calls}
        return counts

    def preview(self, views: list[torch.Tensor] | None = None) -> torch.Tensor:
        """IMAGE (N, 224, 224, 3) of what the encoders saw: the two sources, then ``views`` (default: the last
        scored batch), each squashed to a square as the encoders get them."""
        views = list(self.source_views) + list(self.last_views if views is None else views)
        return torch.cat([score_ops.squash_resize(v[None], PREVIEW_SIZE) for v in views]).movedim(1, -1)

    def describe(self) -> str:
        o = self.options
        lines = [f"DINO: {self.dino.name}; CLIP: {self.clip.name}",
                 f"isolation: {o.isolation}" + (f" (query {self._caption(*self.labels)!r}, box_threshold "
                                                f"{o.box_threshold}, detect at {o.detect_short_side}px)"
                                                if o.isolation != "none" else ""),
                 f"label texts: {self.texts[0]!r}, {self.texts[1]!r} ({o.label_text}); encoder input: {o.resize}"]
        for k, info in enumerate(self.source_info, start=1):
            lines.append(f"source {k}: box {info['box']} (confidence {info['box_confidence']})"
                         if info["box"] else f"source {k}: full image" + (" (no box found)" if o.isolation != "none"
                                                                           else ""))
        return "\n".join(lines)


def format_breakdown(results: list[dict]) -> str:
    """One readable line per image: S and every term."""
    lines = []
    for i, r in enumerate(results):
        box = f" box {r['box']} ({r['box_confidence']})" if r.get("box") else ""
        lines.append(f"[{i}] S = {r['score']:.4f}  D1 = {r['D1']:.4f}  D2 = {r['D2']:.4f}  T1 = {r['T1']:.4f}  "
                     f"T2 = {r['T2']:.4f}  n1 = {r['n1']:.4f}  n2 = {r['n2']:.4f}{box}")
    return "\n".join(lines)


