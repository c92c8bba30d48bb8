"""The Similarity Score (docs/method.md, "Similarity Score S") and the image handling around it, as pure torch
functions.

Symbols (run_single.py:64-77 of the reference):
    D_k = cos(DINO(source_k crop), DINO(fused crop))          identity kept from image k
    T_k = cos(CLIP_img(fused crop), CLIP_txt(label_k))          semantics of label k
    n_k = (T_k − t_low) / (t_high − t_low)                      T_k min-max normalised (0.15 … 0.45)
    S   = D1 + D2 + n1 + n2 − |D1 − D2| − |n1 − n2|  =  2·min(D1, D2) + 2·min(n1, n2)

Images here are (B, 3, H, W) float tensors in [0, 1]; boxes are pixel ``(x0, y0, x1, y1)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, nms

#: The reference's text normalisation bounds (run_single.py:69-70).
T_LOW, T_HIGH = 0.15, 0.45
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: What replaces the background in the ``sam`` isolation mode: mid grey.
NEUTRAL_FILL = (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------------------------------
# the score

def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a, b) along the last axis, in fp32; (B, C) × (B or 1, C) → (B,)."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


def normalise_text_similarity(t: torch.Tensor, t_low: float = T_LOW, t_high: float = T_HIGH) -> torch.Tensor:
    """n = (T − t_low) / (t_high − t_low): the CLIP text term on the scale of the DINO term."""
    if not t_high > t_low:
        raise ValueError(f"t_high ({t_high}) must be greater than t_low ({t_low})")
    return (t - t_low) / (t_high - t_low)


def balanced_sum(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """x1 + x2 − |x1 − x2| = 2·min(x1, x2): a pair only scores as well as its weaker side."""
    return x1 + x2 - (x1 - x2).abs()


def similarity_score(d1, d2, t1, t2, t_low: float = T_LOW, t_high: float = T_HIGH) -> dict[str, torch.Tensor]:
    """S = D1 + D2 + n1 + n2 − |D1 − D2| − |n1 − n2| (paper Eq. of §3.3; reference run_single.py:64-77).

    Every input is a tensor (batch-wise) or a float; returns float32 tensors of one shape for every term:
    ``D1, D2, T1, T2, n1, n2, score``. Equal to 2·min(D1, D2) + 2·min(n1, n2)."""
    d1, d2, t1, t2 = torch.broadcast_tensors(*(torch.as_tensor(x, dtype=torch.float32) for x in (d1, d2, t1, t2)))
    n1 = normalise_text_similarity(t1, t_low, t_high)
    n2 = normalise_text_similarity(t2, t_low, t_high)
    score = balanced_sum(d1, d2) + balanced_sum(n1, n2)
    return {"score": score, "D1": d1, "D2": d2, "T1": t1, "T2": t2, "n1": n1, "n2": n2}


# --------------------------------------------------------------------------------------------------
# encoder inputs and features

def squash_resize(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Resize to size × size ignoring the aspect ratio (no centre crop), bicubic with antialiasing — torchvision's
    ``Resize((224, 224))`` on tensors, as the reference does before DINOv2 and OpenCLIP (get_sim.py; no centre crop)."""
    out = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


#: Beyond this aspect ratio a centre crop first trims the long side (see ``central_region``).
MAX_CROP_ASPECT = 16


def central_region(images: torch.Tensor, max_aspect: int = MAX_CROP_ASPECT) -> torch.Tensor:
    """The centre of images (..., H, W) with the longer side trimmed to ``max_aspect`` × the shorter one. A centre
    crop keeps only the middle square anyway; resizing a 3000×1 strip whole to a 256-pixel short side first would
    allocate a 768 000-pixel-long image (gigabytes). Images up to ``max_aspect``:1 come back unchanged (the same
    tensor), so their crops are bit-identical."""
    h, w = images.shape[-2:]
    short = min(h, w)
    if max(h, w) <= max_aspect * short:
        return images
    keep = max_aspect * short
    top, left = (h - min(h, keep)) // 2, (w - min(w, keep)) // 2
    return images[..., top:top + min(h, keep), left:left + min(w, keep)]


def center_crop_resize(images: torch.Tensor, size: int = 224, short_side: int = 256) -> torch.Tensor:
    """The libraries' own preprocessing (not the reference's): shorter side to ``short_side`` (bicubic,
    antialiased), then a centre crop of size × size (a strip beyond 16:1 trimmed first, ``central_region``)."""
    images = central_region(images)
    h, w = images.shape[-2:]
    scale = short_side / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = F.interpolate(images.float(), size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return out[..., top:top + size, left:left + size].clamp(0.0, 1.0)


def normalise_pixels(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(x − mean) / std per channel."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def mean_token_feature(last_hidden_state: torch.Tensor) -> torch.Tensor:
    """The reference's DINOv2 feature: the mean over ALL output tokens (CLS and patches), (B, N, C) → (B, C)."""
    return last_hidden_state.float().mean(dim=1)


# --------------------------------------------------------------------------------------------------
# object isolation: boxes, crops, masks

def boxes_to_pixels(boxes_cxcywh: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Normalised (cx, cy, w, h) → pixel (x0, y0, x1, y1) on the REAL image size (the reference multiplies by a
    hard-coded 512, GroundingDINO inference.py:199-200)."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes_cxcywh.device)
    return box_convert(boxes_cxcywh.float() * scale, "cxcywh", "xyxy")


def select_box(scores: torch.Tensor, boxes_xyxy: torch.Tensor, box_threshold: float = 0.25,
               nms_iou: float = 0.8) -> tuple[torch.Tensor, float] | None:
    """The reference's detection post-processing: keep boxes scoring above ``box_threshold``, non-maximum
    suppression at ``nms_iou``, return the single most confident (box, score), or None if nothing is kept.
    (NMS never removes the most confident box, so it cannot change the top-1; it is kept for fidelity.)"""
    keep = scores > box_threshold
    scores, boxes = scores[keep].float(), boxes_xyxy[keep].float()
    if scores.numel() == 0:
        return None
    best = nms(boxes, scores, nms_iou)[0]
    return boxes[best], float(scores[best])


def crop_bounds(box_xyxy, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer crop bounds of a pixel box: coordinates truncated with int() as the reference's
    ``image[:, y:y2, x:x2]``, clamped to the image; None if the box holds no pixel (then the full image is used)."""
    x0, y0, x1, y1 = (int(float(v)) for v in box_xyxy)
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def crop_to_box(image: torch.Tensor, box_xyxy) -> torch.Tensor:
    """Crop one image (3, H, W) to a pixel box (see crop_bounds); the full image if there is no box."""
    bounds = None if box_xyxy is None else crop_bounds(box_xyxy, image.shape[-1], image.shape[-2])
    if bounds is None:
        return image
    x0, y0, x1, y1 = bounds
    return image[..., y0:y1, x0:x1]


def neutral_fill(image: torch.Tensor, mask: torch.Tensor, fill=NEUTRAL_FILL) -> torch.Tensor:
    """Keep the object (mask true) and replace the background with a neutral colour; image (3, H, W) or
    (B, 3, H, W), mask (H, W) or (B, 1, H, W) broadcastable."""
    fill = torch.as_tensor(fill, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return torch.where(mask.bool(), image, fill)


def grounding_resize_shape(height: int, width: int, short_side: int = 800, max_size: int = 1333) -> tuple[int, int]:
    """GroundingDINO's input size: the shorter side to ``short_side``, the longer side at most ``max_size``
    (the reference's RandomResize([800], max_size=1333)); returns (h, w), each side at least 1 pixel."""
    short, long = min(height, width), max(height, width)
    target = float(short_side)
    if long / short * target > max_size:
        target = max(1, round(max_size * short / long))  # a 3000×1 strip keeps one pixel, not zero
    if width < height:
        return max(1, int(target * height / width)), int(target)
    return int(target), max(1, int(target * width / height))


# --------------------------------------------------------------------------------------------------
# label text given to CLIP

#: official: the reference's str() of a one-element list (get_sim.py:76-78); reference: its template alone;
#: plain: the label as typed.
LABEL_TEXT_MODES = ("official", "reference", "plain")


def label_text(label: str, mode: str = "official") -> str:
    """The text CLIP embeds for label T_k: ``"['A  X .']"`` (official, brackets and quotes included),
    ``"A  X ."`` (reference template: two spaces after A, a space before the period) or ``"X"`` (plain)."""
    template = f"A  {label} ."
    if mode == "official":
        return str([template])
    if mode == "reference":
        return template
    if mode == "plain":
        return label
    raise ValueError(f"label text mode {mode!r}: expected one of {LABEL_TEXT_MODES}")
