"""Reference-latent models (FLUX.1 Kontext, FLUX.2): the reference encoder, the conditioning that carries the
references (core's ``reference_latents``) and the attention-bias hook that weighs them (β: SCat, α: SInp).

The hook is ComfyUI's public ``transformer_options["optimized_attention_override"]`` (comfy/ldm/modules/attention.py
``wrap_attn``), called by every attention of Flux's double and single blocks (comfy/ldm/flux/math.py ``attention``);
Flux's own forward runs unchanged: one DiT pass per step, the references are appended by core as usual."""
from __future__ import annotations

import math

import torch

import comfy.ldm.modules.attention as comfy_attention
import nodes as comfy_nodes

from ...vmdiff_ops.reference import (drop_unseen_keys, reference_key_bias, reference_token_counts, scat_reference_bias,
                                     sinp_reference_bias, sinp_reference_bias_n)
from ..errors import VMDiffInputError
from .flow import TEXT_AND_REFERENCES
from .reference_context import reference_phase_conditioning
from .settings import ops_errors
from .sockets import ReduxTokens, ReferenceLatents, fingerprint
from .tokens import to_rgb

OVERRIDE_KEY = "optimized_attention_override"


def attention_override_supported() -> bool:
    """Whether this ComfyUI calls ``transformer_options["optimized_attention_override"]`` (0.8.0 does)."""
    return hasattr(comfy_attention, "wrap_attn")


def is_reference(value) -> bool:
    return isinstance(value, ReferenceLatents)


def encode_reference(vae, image: torch.Tensor) -> ReferenceLatents:
    """One image → its VAE latent, exactly as core's VAEEncode makes it for ReferenceLatent (the model's latent
    scaling is applied later by core, in ``Flux.extra_conds``)."""
    rgb, note = to_rgb(image, "image")
    latent = comfy_nodes.VAEEncode().encode(vae, rgb)[0]["samples"]
    encoder_id = fingerprint(vae.first_stage_model) if hasattr(vae, "first_stage_model") else type(vae).__name__
    info = {"image_size": tuple(image.shape[1:3]), "note": note}
    return ReferenceLatents(latents=(latent,), bias=(0.0,), encoder_id=encoder_id, info=info)


def check_reference_pair(tokens_1, tokens_2, model) -> None:
    """Both inputs references (or tokens_2 unconnected), from one VAE whose latent the model takes."""
    named = [("tokens_1", tokens_1)] + ([] if tokens_2 is None else [("tokens_2", tokens_2)])
    for name, t in named:
        if isinstance(t, ReduxTokens):
            raise VMDiffInputError(f"{name}: a Redux token set cannot be mixed with reference images; encode both "
                                   f"objects with VMDiff Reference Encode (or both with VMDiff Redux Encode)")
        if not is_reference(t):
            raise VMDiffInputError(f"{name}: expected a VMDiff Reference Encode output, got {type(t).__name__}")
    channels = model.model.latent_format.latent_channels
    for name, t in named:
        for lat in t.latents:
            if lat.shape[1] != channels:
                raise VMDiffInputError(f"{name}: its reference latent has {lat.shape[1]} channels, the model takes "
                                       f"{channels}; encode the image with this model's VAE")
            if not torch.isfinite(lat).all():
                raise VMDiffInputError(f"{name}: the reference latent contains NaN or infinite values; re-encode "
                                       f"the image with VMDiff Reference Encode")
    if tokens_2 is not None and len(tokens_1.latents) > 1:
        raise VMDiffInputError("tokens_1: is already a set of references from VMDiff Mix Tokens N; a ready set goes "
                               "into tokens_1 alone: leave tokens_2 unconnected")
    if tokens_2 is not None and tokens_1.encoder_id != tokens_2.encoder_id:
        raise VMDiffInputError(f"tokens_2: encoded by another VAE than tokens_1 ({tokens_2.encoder_id} vs "
                               f"{tokens_1.encoder_id}); encode both images with the model's VAE")


def reference_conditioning(conditioning, latents, guidance: float, model) -> list:
    """One phase's CONDITIONING on a reference-latent model: the prompt's own text tokens as the context (and its
    pooled vector where the model reads one: Kontext), the phase's guidance where the model embeds it, and the
    references as core's ``reference_latents`` (what ReferenceLatent sets): stages.reference_context in its
    ``text_and_references`` mode, whatever the stage's context widget says (a graph switched from Redux by swapping
    the encoder node keeps working). Refuses a conditioning that already carries references or has no text."""
    if not conditioning or not isinstance(conditioning, list):
        raise VMDiffInputError("conditioning: expected a CONDITIONING: encode the fusion prompt with the model's own "
                               "text encoder (CLIP Text Encode)")
    text, extras = conditioning[0][0], conditioning[0][1]
    if extras.get("reference_latents"):
        raise VMDiffInputError("conditioning: already carries reference latents (ReferenceLatent); connect the "
                               "plain text conditioning, the references come from tokens_1 / tokens_2")
    if text.shape[1] == 0:
        raise VMDiffInputError("conditioning: has no text tokens; with reference images the prompt's text is the "
                               "context: encode the fusion prompt with CLIP Text Encode")
    return reference_phase_conditioning(conditioning, list(latents), guidance, TEXT_AND_REFERENCES, model)


class ReferenceAttentionBias:
    """``optimized_attention_override``: adds b_k to every query's logits on reference k's keys.

    ``bias`` (B, K) per batch element (a batch of β pairs or α values) or (1, K); ``token_counts`` n_k. The keys are
    Flux's joint sequence [text, image, ref 1 … ref K] (references last, comfy/ldm/flux/model.py ``_forward``).
    Keys of a −inf reference are dropped (exact exclusion); finite non-zero biases go into an additive mask through
    PyTorch SDPA (``attention_pytorch``; every device has it). An all-zero row calls the attention ComfyUI chose
    unchanged, so plain multi-reference sampling is reproduced bit for bit. ``previous``: an override already
    installed on the model, still called."""

    def __init__(self, bias: torch.Tensor, token_counts: list[int], previous=None):
        self.bias = bias.reshape(1, -1) if bias.ndim == 1 else bias
        self.token_counts = token_counts
        self.previous = previous
        self.calls = 0

    def _attend(self, func, q, k, v, heads, key_bias, kwargs):
        key_axis = 2 if kwargs.get("skip_reshape") else 1
        mask = kwargs.get("mask")
        k, v, key_bias, keep = drop_unseen_keys(k, v, key_bias.to(k.device), key_axis)
        if mask is not None and not bool(keep.all()) and mask.shape[-1] == keep.shape[0]:
            mask = mask[..., keep.to(mask.device)]
        if not bool((key_bias != 0).any()):
            call = self.previous or (lambda f, *a, **kw: f(*a, **kw))
            return call(func, q, k, v, heads, **dict(kwargs, mask=mask))
        additive = key_bias.to(q.dtype).view(1, 1, 1, -1) if key_axis == 2 else key_bias.to(q.dtype).view(1, 1, -1)
        if mask is not None:
            if mask.dtype == torch.bool:
                mask = torch.zeros(mask.shape, dtype=q.dtype, device=mask.device).masked_fill(~mask, -math.inf)
            additive = additive + mask.to(q.dtype)
        return comfy_attention.attention_pytorch(q, k, v, heads, **dict(kwargs, mask=additive))

    def __call__(self, func, q, k, v, heads, **kwargs):
        self.calls += 1
        key_axis = 2 if kwargs.get("skip_reshape") else 1
        batch = q.shape[0]
        if batch % self.bias.shape[0]:
            raise VMDiffInputError(f"reference bias: {self.bias.shape[0]} rows for an attention batch of {batch}")
        rows = reference_key_bias(k.shape[key_axis], self.token_counts, self.bias)
        rows = rows.repeat(batch // rows.shape[0], 1)  # conds batched together repeat the whole batch
        distinct = torch.unique(rows, dim=0)
        if distinct.shape[0] == 1:
            return self._attend(func, q, k, v, heads, distinct[0], kwargs)
        out = None
        for row in distinct:  # a batch of different β / α: one attention call per distinct bias row
            index = (rows == row).all(dim=1).nonzero().flatten()
            mask = kwargs.get("mask")
            sub_kwargs = dict(kwargs)
            if mask is not None and mask.ndim >= 3 and mask.shape[0] == batch:
                sub_kwargs["mask"] = mask[index.to(mask.device)]
            part = self._attend(func, q[index.to(q.device)], k[index.to(k.device)], v[index.to(v.device)], heads,
                                row, sub_kwargs)
            if out is None:
                out = part.new_empty((batch, *part.shape[1:]))
            out[index.to(out.device)] = part
        return out


def reference_bias_options(model, latents, bias: torch.Tensor):
    """The transformer_options that install the reference-bias hook for these reference latents on ``model``
    (for one sampling run; the MODEL itself is not changed), or None when every bias is 0 (plain multi-reference
    sampling: nothing to weigh, core's path untouched). Returns (options or None, hook or None)."""
    bias = bias.reshape(1, -1) if bias.ndim == 1 else bias
    if not bool((bias != 0).any()):
        return None, None
    if not attention_override_supported():
        raise VMDiffInputError("model: this ComfyUI has no transformer_options['optimized_attention_override'] "
                               "(comfy/ldm/modules/attention.py wrap_attn, present in 0.8.0): β ≠ 1 and α ≠ 0.5 "
                               "on reference images need it; update ComfyUI")
    patch_size = getattr(model.model.diffusion_model, "patch_size", 2)
    counts = reference_token_counts([lat.shape for lat in latents], patch_size)
    previous = model.model_options.get("transformer_options", {}).get(OVERRIDE_KEY)
    hook = ReferenceAttentionBias(bias.float(), counts, previous=previous)
    return {OVERRIDE_KEY: hook}, hook


def _own_bias(t: ReferenceLatents) -> torch.Tensor:
    return torch.tensor(t.bias, dtype=torch.float32)


def scat_references(tokens_1: ReferenceLatents, tokens_2: ReferenceLatents | None, betas: list[tuple]):
    """Blending Noise's SCat on references: all references present, b = log β_k (+ each set's own bias).
    ``tokens_2`` None: tokens_1 is Mix Tokens N's concat, every reference weighed by β1. Returns (latents,
    bias (len(betas), K))."""
    with ops_errors():
        if tokens_2 is None:
            rows = [scat_reference_bias(b1, 1.0)[0] + _own_bias(tokens_1) for b1, _ in betas]
            return list(tokens_1.latents), torch.stack(rows)
        own = torch.cat([_own_bias(tokens_1), _own_bias(tokens_2)])
        rows = [scat_reference_bias(b1, b2) + own for b1, b2 in betas]
        return [*tokens_1.latents, *tokens_2.latents], torch.stack(rows)


def sinp_references(tokens_1: ReferenceLatents, tokens_2: ReferenceLatents | None, alphas: list[float]):
    """Mixing Denoise's SInp on references: b = [log min(1, 2(1 − α)), log min(1, 2α)] per α. ``tokens_2`` None:
    tokens_1 is Mix Tokens N's mix, its own biases (the N-way rule) apply and α does not. Returns (latents,
    bias (len(alphas), K))."""
    if tokens_2 is None:
        return list(tokens_1.latents), _own_bias(tokens_1).expand(len(alphas), -1).clone()
    own = torch.cat([_own_bias(tokens_1), _own_bias(tokens_2)])
    with ops_errors():
        rows = [sinp_reference_bias(a) + own for a in alphas]
    return [*tokens_1.latents, *tokens_2.latents], torch.stack(rows)


def mix_reference_sets(sets: list, weights: list) -> tuple[ReferenceLatents, ReferenceLatents, list[float]]:
    """Mix Tokens N on references: (SInp: all references with b_k = log min(1, N·w_k), SCat: all references with
    b_k = 0, the normalised weights). ``sets`` [(k, ReferenceLatents of one image)]."""
    for k, t in sets:
        if not is_reference(t):
            raise VMDiffInputError(f"tokens_{k}: a Redux token set cannot be mixed with reference images; encode "
                                   f"every object with VMDiff Reference Encode (or every one with Redux Encode)")
        if len(t.latents) != 1:
            raise VMDiffInputError(f"tokens_{k}: is already a set of references from VMDiff Mix Tokens N; connect "
                                   f"single VMDiff Reference Encode outputs")
        if t.encoder_id != sets[0][1].encoder_id:
            raise VMDiffInputError(f"tokens_{k}: encoded by another VAE than tokens_{sets[0][0]}; encode all images "
                                   f"with the model's VAE")
    with ops_errors("weights: "):
        bias = sinp_reference_bias_n(weights)
    total = sum(float(w) for w in weights)
    names = [f"tokens_{k}" for k, _ in sets]
    latents = tuple(t.latents[0] for _, t in sets)
    encoder = sets[0][1].encoder_id
    sinp = ReferenceLatents(latents, tuple(bias.tolist()), encoder, {"mixed": names})
    scat = ReferenceLatents(latents, (0.0,) * len(sets), encoder, {"concat": names})
    return sinp, scat, [float(w) / total for w in weights]


def describe(t) -> str:
    """A short text of a token set or reference set for a node's preview."""
    if is_reference(t):
        return f"{len(t.latents)} reference latent(s)"
    return f"{t.tokens.shape[1]} tokens"
