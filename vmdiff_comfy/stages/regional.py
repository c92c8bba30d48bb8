"""Part-level fusion inside ComfyUI: a MASK → the regional Mixing Denoise conditioning (vmdiff_ops.regional).

The conditioning uses ComfyUI's own route for attention masks on Flux: the ``attention_mask`` key (an additive
mask over [context ; image tokens]) with ``attention_mask_img_shape`` (the token grid it was made for), which
``comfy.model_base.Flux.extra_conds`` hands to every DiT block. The mask is built at the latent's exact token grid,
so ComfyUI's own mask rescaling (``comfy.utils.upscale_dit_mask``) is a no-op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

import comfy.utils

from ...vmdiff_ops.regional import alpha_levels, regional_attention_mask
from ..errors import VMDiffInputError
from .checks import as_float32
from .settings import ops_errors, problems, raise_problems


@dataclass(frozen=True)
class AlphaMap:
    """A spatial α for Mixing Denoise: ``alpha`` where ``mask`` is 0, ``alpha_masked`` where it is 1, a soft mask
    quantised to ``levels`` levels; ``image_attention`` as in vmdiff_ops.regional."""

    mask: torch.Tensor
    alpha_masked: float = 0.5
    levels: int = 2
    image_attention: str = "whole_image"


def token_grid(latent_shape, patch_size: int) -> tuple[int, int]:
    """(h, w) of the DiT's image tokens for a latent (B, C, H, W): the model pads to the patch size, then divides."""
    return math.ceil(latent_shape[-2] / patch_size), math.ceil(latent_shape[-1] / patch_size)


def mask_on_token_grid(mask, grid: tuple[int, int]) -> torch.Tensor:
    """The MASK (H, W) or (1, H, W) resized to the token grid the way ComfyUI resizes conditioning masks
    (``comfy.utils.common_upscale``, bilinear, stretched without crop; comfy.samplers does this for ``mask``
    conditions and comfy.utils.upscale_dit_mask for attention masks). Returns (h, w) float32."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3) or (mask.ndim == 3 and mask.shape[0] != 1):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise VMDiffInputError(f"mask: expected one MASK of shape (1, H, W), got {shape}; pass a single mask "
                               f"(e.g. pick one with a batch node)")
    if mask.shape[-1] == 0 or mask.shape[-2] == 0:
        raise VMDiffInputError(f"mask: the mask is {mask.shape[-1]}×{mask.shape[-2]} pixels (empty); connect a real "
                               f"mask (a crop or resize upstream produced nothing)")
    mask = as_float32("mask", mask, "MASK").reshape(1, 1, *mask.shape[-2:])
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise VMDiffInputError("mask: values must lie in [0, 1] (0 → alpha, 1 → alpha_masked); got "
                               f"{float(mask.min()):g} … {float(mask.max()):g}")
    return comfy.utils.common_upscale(mask, grid[1], grid[0], "bilinear", "none")[0, 0].clamp(0, 1)


def regional_conditioning(phase_for_alpha: Callable[[float], list], alpha: float, alpha_map: AlphaMap,
                          grid: tuple[int, int]) -> tuple[list, list[float]]:
    """The Mixing Denoise CONDITIONING for an α map: ``phase_for_alpha(α)`` is the plain one-α conditioning
    (context SInp(α), pooled vector, guidance); one context block per α level in use, concatenated, plus the
    attention mask of vmdiff_ops.regional. One block (a constant map, or α_masked = α) → exactly the plain
    conditioning. Returns (conditioning, the α of each block)."""
    m = alpha_map
    raise_problems(problems(alpha_masked=m.alpha_masked, mask_levels=m.levels, image_attention=m.image_attention))
    with ops_errors("mask: "):
        block_alphas, block_index = alpha_levels(mask_on_token_grid(m.mask, grid), alpha, m.alpha_masked, m.levels)
    phases = [phase_for_alpha(a) for a in block_alphas]
    if len(phases) == 1:
        return phases[0], block_alphas
    contexts = [p[0][0] for p in phases]
    extras = dict(phases[0][0][1])
    extras["attention_mask"] = regional_attention_mask(block_index, contexts[0].shape[1], m.image_attention)[None]
    extras["attention_mask_img_shape"] = grid
    return [[torch.cat(contexts, dim=1), extras]], block_alphas
