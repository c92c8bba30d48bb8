"""SCat and SInp for reference-latent models (FLUX.1 Kontext, FLUX.2): β and α as attention-logit biases.

The paper (docs/method.md: Blending Noise and Mixing Denoise) weighs two objects on FLUX.1 + Redux by their
*context tokens*: SCat = [β1·z1; β2·z2] for
Blending Noise and SInp = slerp(z1, z2; α) for Mixing Denoise. Reference-latent models read an object as VAE-latent
tokens appended to the image sequence (comfy/ldm/flux/model.py ``_forward``: keys [text, image, ref 1, ref 2, …]).
Scaling a VAE latent by β changes the picture (a darker / washed-out reference), not its weight, and two latents of
different pictures have no meaningful slerp. So here the weight is put where the model *reads* a reference: every
attention query's logits on reference k's keys get an additive bias b_k, in every double- and single-stream block:

    softmax(q·Kᵀ/√d + b)  with  b = 0 on text and image keys, b_k on reference k's keys.

exp(b_k) multiplies the attention mass each query puts on reference k before renormalisation: b_k = log w_k is
"reference k counts w_k times" (w_k = 0 → −inf: the reference is not seen at all; w_k = 1 → 0: untouched).

Rules (one function each below):

* SCat analogue (Blending Noise): b_k = log β_k. β1 = β2 = 1 is plain two-reference sampling (all biases 0).
  Limit: Redux's β scales the token *values* (their norm after the context embedder), this scales the attention
  *mass*; both make one object louder, they are not the same number for the same β.
* SInp analogue (Mixing Denoise): b_1 = log min(1, 2(1 − α)), b_2 = log min(1, 2α). α = 0.5: both 0 (plain
  two-reference sampling); α < 0.5 fades reference 2 out (factor 2α) and leaves reference 1 untouched, α > 0.5 the
  converse; α = 0 → b_2 = −inf: exactly reference 1 alone; α = 1 → b_1 = −inf: reference 2 alone *at reference 2's
  position* (its RoPE offset as the second reference: "offset" shifts it by reference 1's height or width, "index"
  puts it at index 2), so α = 1 is not bit-identical to sampling with reference 2 as the only reference; it is
  identical whatever reference 1's picture is. Fading without boosting keeps every bias ≤ 0, so no reference is
  ever weighed more than in plain sampling (a boost of one reference has no counterpart in the model's training).
  Limit: the model still sees two separate reference images, not one interpolated object: SInp's "one object in
  between" comes from ε_b (Blending Noise) and from the balance, not from a mixed condition.
* N references (Mix Tokens N): weights w_k normalised to sum 1, b_k = log min(1, N·w_k): equal weights → plain
  N-reference sampling, N = 2 with (1 − α, α) → the SInp rule above, w_k = 0 → reference k excluded.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def scat_reference_bias(beta_1: float, beta_2: float) -> torch.Tensor:
    """log β_k: the SCat analogue of Blending Noise for two references (module docstring).

    β1, β2 > 0 (finite); returns (2,) float32 [log β1, log β2]. Raises ValueError otherwise (β = 0 would remove
    a reference from SCat, which then is no blend)."""
    for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"{name} must be a finite number > 0 (it weighs a reference), got {beta}")
    return torch.tensor([math.log(beta_1), math.log(beta_2)], dtype=torch.float32)


def sinp_reference_bias_n(weights: Sequence[float]) -> torch.Tensor:
    """b_k = log min(1, N·w_k), w normalised to sum 1: the N-reference SInp analogue (module docstring).

    weights: N ≥ 2 non-negative finite numbers, not all 0. Returns (N,) float32; −inf where w_k = 0.
    Raises ValueError for fewer than two weights, negative, non-finite or all-zero weights."""
    w = [float(x) for x in weights]
    if len(w) < 2:
        raise ValueError(f"need at least two reference weights, got {len(w)}")
    if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"reference weights must be finite, >= 0 and not all 0, got {w}")
    n, total = len(w), sum(w)
    return torch.tensor([math.log(min(1.0, n * x / total)) if x > 0 else -math.inf for x in w], dtype=torch.float32)


def sinp_reference_bias(alpha: float) -> torch.Tensor:
    """[log min(1, 2(1 − α)), log min(1, 2α)]: the SInp analogue of Mixing Denoise for two references.

    α ∈ [0, 1] is the weight of reference 2 (as SInp's α of image 2). Returns (2,) float32, −inf at the ends
    (α = 0: reference 2 unseen; α = 1: reference 1 unseen). Raises ValueError outside [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (the weight of reference 2), got {alpha}")
    return sinp_reference_bias_n([1.0 - alpha, alpha])


def reference_token_counts(shapes: Sequence[Sequence[int]], patch_size: int) -> list[int]:
    """Tokens each reference latent adds to the joint sequence: ⌈h/p⌉·⌈w/p⌉ (Flux pads a latent to the patch size).

    shapes: each reference's latent shape (…, h, w); patch_size p (FLUX.1: 2, FLUX.2: 1)."""
    return [math.ceil(s[-2] / patch_size) * math.ceil(s[-1] / patch_size) for s in shapes]


def reference_key_bias(key_length: int, token_counts: Sequence[int], bias: torch.Tensor) -> torch.Tensor:
    """The additive attention bias over the key sequence [text, image, ref 1, …, ref K] (references last).

    key_length: L, the joint sequence length; token_counts: n_k of each reference (``reference_token_counts``);
    bias: (K,) or (B, K) per-reference biases b_k. Returns (B, L) (B = 1 for a (K,) bias): 0 on the first
    L − Σn_k keys (text and image), b_k on reference k's n_k keys. Raises ValueError when the references do not fit
    in L or K does not match."""
    bias = bias.reshape(1, -1) if bias.ndim == 1 else bias
    if bias.shape[-1] != len(token_counts):
        raise ValueError(f"{bias.shape[-1]} reference biases for {len(token_counts)} references")
    total = sum(token_counts)
    if total >= key_length:
        raise ValueError(f"{total} reference tokens do not fit in a key sequence of {key_length}")
    counts = torch.tensor([key_length - total, *token_counts], device=bias.device)
    full = torch.cat([bias.new_zeros(bias.shape[0], 1), bias], dim=1)
    return full.repeat_interleave(counts, dim=1)


def drop_unseen_keys(k: torch.Tensor, v: torch.Tensor, key_bias: torch.Tensor, key_axis: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """softmax with a −inf bias on a key equals softmax without that key: remove those keys from K and V.

    key_bias: (L,) one row shared by the batch. Returns (K', V', the remaining bias (L',), the kept-key mask (L,)).
    Dropping instead of masking keeps a −inf reference out of the arithmetic altogether, so α = 0 reproduces
    reference-1-alone sampling exactly (same keys, same kernel, no mask)."""
    keep = torch.isfinite(key_bias)
    if bool(keep.all()):
        return k, v, key_bias, keep
    index = keep.nonzero().flatten().to(k.device)
    return k.index_select(key_axis, index), v.index_select(key_axis, index), key_bias[keep], keep
