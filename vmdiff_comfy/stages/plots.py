"""Pictures of a search for the Auto-Tune outputs: score against α and β, and a grid of the candidates (PIL only)."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROUND_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def to_image_tensor(picture: Image.Image) -> torch.Tensor:
    """PIL RGB → ComfyUI IMAGE (1, H, W, 3) in [0, 1]."""
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)[None]


def to_pil(image: torch.Tensor) -> Image.Image:
    """One ComfyUI IMAGE (H, W, 3) in [0, 1] → PIL; NaN pixels show black, ±inf white/black."""
    pixels = torch.nan_to_num(image.detach().float(), nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)
    return Image.fromarray((pixels.cpu().numpy() * 255).round().astype(np.uint8))


def _number(value: float, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _panel(draw, box, points, x_label, threshold, font):
    """A scatter panel of (x, score, round, is_best) points inside box = (left, top, right, bottom). Points with a
    non-finite score (NaN, ±inf) are marked × on the bottom edge and counted, never scaled."""
    left, top, right, bottom = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((left, bottom + 6), x_label, fill=(0, 0, 0), font=font)
    finite = lambda *values: all(math.isfinite(v) for v in values)  # noqa: E731
    spoiled = [p for p in points if not finite(p[1]) and finite(p[0])]
    points = [p for p in points if finite(p[0], p[1])]
    if spoiled:
        draw.text((left + 4, bottom - 14), f"{len(spoiled)} non-finite S (×)", fill=(200, 0, 0), font=font)
    if not points and not spoiled:
        draw.text((left + 10, top + 10), "(no evaluations)", fill=(120, 120, 120), font=font)
        return
    xs = [p[0] for p in points + spoiled]
    ys = [p[1] for p in points] + ([threshold] if finite(threshold) else []) or [0.0]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1e-3), (y1 if y1 > y0 else y0 + 1e-3)
    sx = lambda x: left + 20 + (x - x0) / (x1 - x0) * (right - left - 40)  # noqa: E731
    sy = lambda y: bottom - 20 - (y - y0) / (y1 - y0) * (bottom - top - 40)  # noqa: E731
    if finite(threshold):
        draw.line([(left, sy(threshold)), (right, sy(threshold))], fill=(200, 0, 0))
        draw.text((right - 90, sy(threshold) - 14), f"S = {threshold:g}", fill=(200, 0, 0), font=font)
    for x, *_ in spoiled:
        draw.line([(sx(x) - 4, bottom - 4), (sx(x) + 4, bottom - 12)], fill=(200, 0, 0))
        draw.line([(sx(x) - 4, bottom - 12), (sx(x) + 4, bottom - 4)], fill=(200, 0, 0))
    for x, y, round_, best in points:
        colour = ROUND_COLOURS[(round_ - 1) % len(ROUND_COLOURS)]
        r = 6 if best else 4
        draw.ellipse([sx(x) - r, sy(y) - r, sx(x) + r, sy(y) + r], fill=colour, outline=(0, 0, 0) if best else None)
    draw.text((left + 4, top + 4), f"{x0:.3f} … {x1:.3f}   S {min(ys):.3f} … {max(ys):.3f}", fill=(0, 0, 0),
              font=font)


def search_plot(records: list[dict], best: dict, threshold: float, width: int = 900, height: int = 360) -> torch.Tensor:
    """Score S against α (α stage) and against the searched β (β stage), coloured by round; best circled."""
    picture = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    is_best = lambda r: r is best or r == best  # noqa: E731
    alpha_points = [(r["alpha"], r["score"], r["round"], is_best(r)) for r in records if r["stage"] == "alpha"]
    beta_points = [(r["searched_beta"], r["score"], r["round"], is_best(r)) for r in records if r["stage"] == "beta"]
    half = width // 2
    _panel(draw, (20, 30, half - 20, height - 40), alpha_points, "α (β1 = β2 = 1)", threshold, font)
    _panel(draw, (half + 20, 30, width - 20, height - 40), beta_points, "β of the weaker side", threshold, font)
    draw.text((20, 8), f"VMDiff Auto-Tune: {len(records)} candidates; best S = {_number(best['score'])} at "
                       f"α = {_number(best['alpha'], '.4f')}, β = ({_number(best['beta_1'], 'g')}, "
                       f"{_number(best['beta_2'], 'g')}), seed {best['seed']}",
              fill=(0, 0, 0), font=font)
    return to_image_tensor(picture)


def candidate_grid(images: list[torch.Tensor], captions: list[str], best_index: int, tile: int = 160,
                   columns: int = 6) -> torch.Tensor:
    """The candidates' images in evaluation order, each captioned; the best one framed in red."""
    rows = max(1, -(-len(images) // columns))
    cols = min(columns, max(1, len(images)))
    picture = Image.new("RGB", (cols * tile, rows * (tile + 16)), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for i, (image, caption) in enumerate(zip(images, captions)):
        x, y = (i % columns) * tile, (i // columns) * (tile + 16)
        picture.paste(to_pil(image).resize((tile - 8, tile - 8)), (x + 4, y + 4))
        if i == best_index:
            draw.rectangle([x + 1, y + 1, x + tile - 2, y + tile - 2], outline=(220, 0, 0), width=3)
        draw.text((x + 4, y + tile), caption, fill=(0, 0, 0), font=font)
    return to_image_tensor(picture)
