"""Part-level fusion: a spatial α for Mixing Denoise (an extension of the paper's global α;
docs/method.md, "Part-level fusion").

The paper's MDeNoise condition is one mixed token set SInp(α) seen by every image token. Here a map
m ∈ [0, 1] over the image-token grid picks α per token: α(m) = α + (α_masked − α)·m, quantised to K levels
(:func:`alpha_levels`). The condition becomes the concatenation SInp(α_0) ; SInp(α_1) ; … (one *context block*
per α that some token uses) and a joint-sequence attention mask (:func:`regional_attention_mask`) routes each
image token to its block only.

Attention rule over the FLUX joint sequence [block_0 ; … ; block_{B−1} ; image tokens] (ComfyUI's order: the
context first, then the image):

* an image token of block k attends to block k and never to another block;
* block k's tokens attend to their own block and to the image tokens of block k (the pair talks both ways, as
  text and image do in FLUX); blocks never see each other;
* image ↔ image: ``"whole_image"`` — every image token attends to every image token, so the regions exchange
  information through the picture and the border blends (an image token of region A is influenced by block B
  only indirectly, through region B's image tokens, from the second DiT block on); ``"own_region"`` — image
  tokens attend only to image tokens of their own block, so each region is denoised as its own generation
  (with its true RoPE positions) and is exactly isolated from the other blocks at every depth: a hard seam.

The pooled CLIP-L vector and the Flux guidance are global (they modulate every token alike); the region border is
where the quantised map changes level — with K > 2 levels a soft (gradient) mask gives a band of intermediate
α values between the two regions.
"""
from __future__ import annotations

import torch

IMAGE_ATTENTION = ("whole_image", "own_region")


def alpha_levels(token_map: torch.Tensor, alpha: float, alpha_masked: float, levels: int = 2
                 ) -> tuple[list[float], torch.Tensor]:
    """Quantise the α map of the image tokens into context blocks.

    ``token_map``: m on the token grid, (h, w) with values in [0, 1] (0 → α, 1 → α_masked). Each token takes
    level q = round(m·(K − 1)) of K = ``levels`` and α_q = (1 − q/(K − 1))·α + q/(K − 1)·α_masked. Levels that no
    token uses are dropped and levels with the same α share one block, so a constant map (or α_masked = α) gives
    one block, i.e. the plain MDeNoise condition SInp(α).

    Returns (the α of each block in increasing level order, the block index of every token as a (h, w) long
    tensor).
    """
    if token_map.ndim != 2:
        raise ValueError(f"token_map must be (h, w), got shape {tuple(token_map.shape)}")
    if not torch.isfinite(token_map).all() or token_map.min() < 0 or token_map.max() > 1:
        raise ValueError("token_map m must hold finite values in [0, 1]")
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels K must be an integer ≥ 2, got {levels}")
    for name, a in (("alpha", alpha), ("alpha_masked", alpha_masked)):
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {a}")
    level = torch.round(token_map.double() * (levels - 1)).long()
    block_alphas, block_of_level = [], torch.full((levels,), -1, dtype=torch.long)
    for q in level.unique().tolist():  # ascending
        t = q / (levels - 1)
        a = (1 - t) * alpha + t * alpha_masked  # exact α at t = 0 and α_masked at t = 1
        if a not in block_alphas:
            block_alphas.append(a)
        block_of_level[q] = block_alphas.index(a)
    return block_alphas, block_of_level[level]


def regional_attention_mask(block_index: torch.Tensor, block_tokens: int, image_attention: str = "whole_image"
                            ) -> torch.Tensor:
    """The additive attention mask (0 = may attend, −inf = may not) over the joint sequence
    [block_0 ; … ; block_{B−1} ; image], with B = block_index.max() + 1 blocks of ``block_tokens`` tokens each
    and the image tokens in raster order of ``block_index`` ((h, w) or flat). Rows are queries, columns keys;
    the rule is the module docstring's. Returns (L, L) float32 with L = B·block_tokens + h·w."""
    if image_attention not in IMAGE_ATTENTION:
        raise ValueError(f"image_attention must be one of {IMAGE_ATTENTION}, got {image_attention!r}")
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be ≥ 1, got {block_tokens}")
    image_block = block_index.reshape(-1).long()
    if image_block.numel() == 0 or image_block.min() < 0:
        raise ValueError("block_index must be a non-empty map of block numbers ≥ 0")
    n_blocks = int(image_block.max()) + 1
    context_block = torch.arange(n_blocks).repeat_interleave(block_tokens)
    group = torch.cat([context_block, image_block])  # the block each position belongs to
    is_image = torch.arange(group.numel()) >= context_block.numel()
    allowed = group[:, None] == group[None, :]
    if image_attention == "whole_image":
        allowed |= is_image[:, None] & is_image[None, :]
    mask = torch.zeros(allowed.shape, dtype=torch.float32)
    return mask.masked_fill_(~allowed, float("-inf"))
