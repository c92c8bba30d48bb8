"""The Similarity Score's CLIP term from ComfyUI's own files: a CLIP_VISION (core Load CLIP Vision, e.g.
``clip_vision_g.safetensors``) and a CLIP (core Load CLIP, e.g. ``clip_g.safetensors``) that are the two towers of one
CLIP model.

T = cos(image embedding, text embedding), the same vectors as OpenCLIP's ``encode_image`` / ``encode_text``:
the vision tower's layer-normed class token after ``visual_projection``, and the text tower's final layer-normed
state at the first end-of-text token after ``text_projection``. Both forward passes are ComfyUI's
(``comfy.clip_model.CLIPVisionModelProjection``; the CLIP's ``comfy.sd1_clip.SDClipModel`` tower, with ComfyUI's
tokenizer), run under the CLIP's / CLIP_VISION's own ModelPatcher (LoRAs and offloading apply).

Which text tower: a CLIP may hold several (an SDXL checkpoint's CLIP has clip_l and clip_g). The one of the vision
tower's family is used (``CLIP_FAMILIES``, matched by shape); for a model of no listed family, the one tower of the
same embedding width. A pair of towers of different models is refused when their shapes tell (``pick_text_tower``).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import torch

import comfy.clip_model
import comfy.model_management
import comfy.sd1_clip

from ...vmdiff_ops import score as score_ops
from ..errors import VMDiffInputError
from .scorer import ScorerModel, prepare_views


@dataclass(frozen=True)
class Tower:
    """One tower as ComfyUI built it: its name (``clip_vision``, ``clip_g``, ``clip_l`` …), transformer width and
    depth, the width of its projected embedding, and (vision) the input size."""

    name: str
    width: int
    layers: int
    embed: int
    image_size: int | None = None

    def __str__(self) -> str:
        size = f", {self.image_size} px" if self.image_size else ""
        return f"{self.name} ({self.width} wide, {self.layers} layers, {self.embed}-d embedding{size})"


@dataclass(frozen=True)
class ClipFamily:
    """A released CLIP model whose towers ComfyUI users have as separate files (shapes from ComfyUI's configs)."""

    name: str
    vision: tuple[int, int, int]   # width, layers, image size
    text: tuple[int, int]          # width, layers
    embed: int
    files: str

    def has_vision(self, t: Tower) -> bool:
        return (t.width, t.layers, t.image_size, t.embed) == (*self.vision, self.embed)

    def has_text(self, t: Tower) -> bool:
        return (t.width, t.layers, t.embed) == (*self.text, self.embed)


CLIP_FAMILIES = (
    ClipFamily("OpenCLIP ViT-bigG-14", (1664, 48, 224), (1280, 32), 1280,
               "clip_vision_g.safetensors (Load CLIP Vision) + clip_g.safetensors (Load CLIP, type stable_diffusion)"),
    ClipFamily("OpenCLIP ViT-H-14", (1280, 32, 224), (1024, 24), 1024,
               "clip_vision_h.safetensors (Load CLIP Vision) + an SD 2.x text encoder (Load CLIP)"),
    ClipFamily("OpenAI CLIP ViT-L-14", (1024, 24, 224), (768, 12), 768,
               "clip_vision_l.safetensors (Load CLIP Vision) + clip_l.safetensors (Load CLIP, type stable_diffusion)"),
)


def vision_family(t: Tower) -> ClipFamily | None:
    return next((f for f in CLIP_FAMILIES if f.has_vision(t)), None)


def text_family(t: Tower) -> ClipFamily | None:
    return next((f for f in CLIP_FAMILIES if f.has_text(t)), None)


def pick_text_tower(vision: Tower, texts: list[Tower]) -> Tower:
    """The text tower of ``texts`` that belongs with ``vision``, or VMDiffInputError naming both and the fix.

    Vision tower of a listed family → that family's text tower. Otherwise the one tower with an embedding as wide as
    the image embedding that is not a listed family's (then the shapes cannot tell more: the pair is trusted to be one
    model, as a stand-in or a custom CLIP would be)."""
    family = vision_family(vision)
    match = [t for t in texts if family.has_text(t)] if family else \
        [t for t in texts if t.embed == vision.embed and text_family(t) is None]
    if len(match) == 1 or (family and match):
        return match[0]
    fix = family.files if family else CLIP_FAMILIES[0].files + ", or VMDiff Load OpenCLIP"

    def role(t: Tower) -> str:
        f = text_family(t)
        return f"{t} — {f.name}'s text tower" if f else str(t)

    holds = "; ".join(map(role, texts)) or "no CLIP text tower"
    if match:
        raise VMDiffInputError(
            f"clip_text: this CLIP holds several text towers as wide as the CLIP_VISION's embedding ({holds}) and "
            f"the shapes cannot tell which belongs with it ({vision}); load that model's text encoder alone with "
            f"Load CLIP.")
    raise VMDiffInputError(
        f"clip_text: this CLIP holds {holds}; none is the text tower of the CLIP_VISION, "
        f"{family.name if family else 'an unlisted model'} ({vision}). T needs the two towers of one CLIP model: "
        f"{fix}.")


def vision_tower(clip_vision) -> Tower:
    """The Tower of a ComfyUI CLIP_VISION; VMDiffInputError if it is not a CLIP vision tower with a projection."""
    model = getattr(clip_vision, "model", None)
    projection = getattr(model, "visual_projection", None)
    if not isinstance(projection, torch.nn.Module) or not hasattr(model, "vision_model"):
        kind = type(model).__name__ if model is not None else type(clip_vision).__name__
        raise VMDiffInputError(
            f"clip_vision: this CLIP_VISION ({kind}) has no CLIP image projection (a DINOv2 or SigLIP vision model "
            f"has no text tower in ComfyUI). Load clip_vision_g.safetensors with Load CLIP Vision.")
    encoder = model.vision_model
    return Tower("clip_vision", encoder.post_layernorm.weight.shape[0], len(encoder.encoder.layers),
                 projection.weight.shape[0], int(clip_vision.image_size))


def text_towers(clip) -> dict[str, tuple[Tower, torch.nn.Module]]:
    """The CLIP text towers of a ComfyUI CLIP (``comfy.sd.CLIP``): {token key: (Tower, SDClipModel)}."""
    model = getattr(clip, "cond_stage_model", None)
    if model is None or not hasattr(clip, "tokenize"):
        raise VMDiffInputError(f"clip_text: expected a CLIP from Load CLIP, got {type(clip).__name__}")
    towers = {}
    for name, module in model.named_children():
        if isinstance(module, comfy.sd1_clip.SDClipModel) and \
                isinstance(module.transformer, comfy.clip_model.CLIPTextModel):
            t = module.transformer
            towers[name.removeprefix("clip_")] = (
                Tower(name, t.text_model.final_layer_norm.weight.shape[0], t.num_layers,
                      t.text_projection.weight.shape[0]), module)
    return towers


def literal_prompt(text: str) -> str:
    """The label as ComfyUI's tokenizer must get it to give OpenCLIP's tokens: HTML entities decoded as OpenCLIP's
    ``basic_clean`` does, and ``(`` / ``)`` escaped (ComfyUI's emphasis syntax)."""
    return html.unescape(html.unescape(text)).replace("(", "\\(").replace(")", "\\)")


class ComfyClipEncoder(ScorerModel):
    """OpenCLIP's T from a CLIP_VISION and the matching text tower of a CLIP (see the module docstring)."""

    kind = "clip"

    def __init__(self, clip_vision, clip):
        vision = vision_tower(clip_vision)
        towers = text_towers(clip)
        text = pick_text_tower(vision, [t for t, _ in towers.values()])
        self.key = next(k for k, (t, _) in towers.items() if t is text)
        self.tower = towers[self.key][1]
        family = vision_family(vision)
        super().__init__(None, f"CLIP_VISION + CLIP {text.name} ({family.name if family else 'unlisted model'})",
                         {"vision": str(vision), "text": str(text)}, patcher=clip_vision.patcher)
        self.clip_vision, self.clip = clip_vision, clip
        self.image_size = vision.image_size
        self.text_calls = 0

    def encode_images(self, views: list[torch.Tensor], resize: str = "squash") -> torch.Tensor:
        """Pixels prepared as for OpenCLIP (float, not CLIPVisionModel.encode_image's 8-bit rounding), then
        ComfyUI's vision tower."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        comfy.model_management.load_model_gpu(self.patcher)
        x = prepare_views(views, self.image_size, resize)
        x = score_ops.normalise_pixels(x, self.clip_vision.image_mean, self.clip_vision.image_std)
        self.count(len(x))
        with torch.inference_mode():
            return self.clip_vision.model(pixel_values=x.to(self.patcher.load_device))[2].float().cpu()

    def text_token_count(self, text: str) -> tuple[int, int]:
        """(content tokens ComfyUI's tokenizer of the tower makes of ``text``, content tokens of its first window):
        only the first window reaches the pooled output."""
        windows = self.clip.tokenize(literal_prompt(text), return_word_ids=True)[self.key]
        counts = [sum(1 for token in window if token[2] > 0) for window in windows] or [0]
        full = len(windows[0]) - 2 if windows else 75  # 77 minus the start and end tokens
        return sum(counts), (full if len(counts) == 1 else counts[0])  # a word never straddles two windows

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """ComfyUI's tokenizer of the tower (first 77-token chunk) and its projected pooled output."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.text_calls += 1
        patcher = self.clip.load_model()
        self.tower.set_clip_options({"projected_pooled": True, "execution_device": patcher.load_device})
        try:
            with torch.inference_mode():
                pooled = [self.tower.encode_token_weights(self.clip.tokenize(literal_prompt(t))[self.key])[1]
                          for t in texts]
        finally:
            self.tower.reset_clip_options()
        return torch.cat(pooled).float().cpu()
