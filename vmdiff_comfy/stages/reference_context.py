"""The ``text_and_references`` context: one phase's CONDITIONING on a reference-latent model (FLUX.2,
FLUX.1 Kontext). There the prompt's text tokens are the context and the two object images travel as ComfyUI's
``reference_latents`` (core ``ReferenceLatent``; ``Flux.extra_conds`` turns them into ``ref_latents``, which the DiT
appends to the image tokens). FLUX.2 reads no pooled vector; Kontext, of FLUX.1's layout, reads CLIP-L's.

The fusion prompt P ("A photo of T1 creatively fused with T2.") is encoded by the model's own text encoder (CLIP Text
Encode on FLUX.2's Mistral / Qwen3 loader, on Kontext's DualCLIP), and arrives here as ``conditioning``."""
from __future__ import annotations

import torch

from ..errors import VMDiffInputError
from .checks import check_one_prompt
from .flow import CONTEXT_MODES, TEXT_AND_REFERENCES

#: The text encoder a context width comes from, for messages (real models; ComfyUI CLIPLoader types).
REFERENCE_TEXT_ENCODERS = {
    15360: "Mistral-Small-3.1 24B (FLUX.2 [dev]; CLIPLoader type flux2)",
    7680: "Qwen3-4B (FLUX.2 [klein] 4B)",
    12288: "Qwen3-8B (FLUX.2 [klein] 9B)",
    4096: "T5-XXL + CLIP-L (FLUX.1 Kontext; DualCLIPLoader type flux)",
}


def _model_params(model):
    return getattr(model.model.diffusion_model, "params", None)


def reference_phase_conditioning(conditioning, references, guidance: float | None, context_mode: str, model,
                                 extras: dict | None = None) -> list:
    """One phase's CONDITIONING for a reference-latent model:
    ``[[text tokens (B, T, context_dim), {"reference_latents": references, guidance?, pooled_output?, …}]]``.

    - ``conditioning``: the fusion prompt encoded by the model's own text encoder, one prompt of batch 1
      (``checks.check_one_prompt``: more entries, a batch or an area / mask it would drop are refused); its
      keys kept (e.g. ``reference_latents_method`` from Edit Model Reference Method) except those set here.
    - ``references``: VAE latents (B, C, h, w), C = the model's latent channels (FLUX.2 128, FLUX.1 16), as
      VAE Encode gives them (ComfyUI applies the latent format when it builds ``ref_latents``); order = reference
      index (FLUX.2 ``index`` method: reference k at index 10·k).
    - ``guidance``: the phase's embedded guidance (γ_den, γ_inv, γ_gen), set only if the model has a guidance
      embedding (FLUX.2 [dev], Kontext); ignored otherwise ([klein]).
    - ``context_mode``: must be ``text_and_references``.
    - ``extras``: further keys for this phase (e.g. the reference weighting of the attention hook).

    The pooled CLIP-L vector is kept (and required) when the model reads one (Kontext), None when it has none
    (FLUX.2). Raises VMDiffInputError naming the input and the fix: another context mode, text of the wrong width
    (another text encoder), no references, or references of the wrong channel count (another VAE)."""
    if context_mode != TEXT_AND_REFERENCES:
        if context_mode not in CONTEXT_MODES:
            raise VMDiffInputError(f"context: unknown mode {context_mode!r}; expected one of {CONTEXT_MODES}")
        raise VMDiffInputError(f"context: {context_mode} is for Redux tokens; reference images (FLUX.2, Kontext) "
                               f"need context text_and_references")
    if not conditioning or not isinstance(conditioning, list):
        raise VMDiffInputError("conditioning: expected the fusion prompt's CONDITIONING (CLIP Text Encode with the "
                               "model's own text encoder)")
    # one prompt of batch 1, no area / mask / reference_latents of its own that this phase would drop
    check_one_prompt("conditioning", conditioning, used="one prompt (its text tokens are the context)")
    text, given = conditioning[0][0], conditioning[0][1]
    params = _model_params(model)
    context_dim = getattr(params, "context_in_dim", None)
    if context_dim is not None and text.shape[-1] != context_dim:
        made = REFERENCE_TEXT_ENCODERS.get(text.shape[-1], "another text encoder")
        need = REFERENCE_TEXT_ENCODERS.get(context_dim, f"a {context_dim}-wide text encoder")
        raise VMDiffInputError(f"conditioning: its text tokens are {text.shape[-1]} wide ({made}) but the model takes "
                               f"{context_dim}: encode the prompt with {need}, the model's own text encoder")
    out = {k: v for k, v in given.items() if k not in ("reference_latents", "guidance", "pooled_output")}
    vec_dim = getattr(params, "vec_in_dim", None)
    if vec_dim is not None:
        pooled = given.get("pooled_output")
        if pooled is None or pooled.shape[-1] != vec_dim:
            found = "none" if pooled is None else f"{pooled.shape[-1]} wide"
            raise VMDiffInputError(f"conditioning: the model reads a {vec_dim}-wide pooled CLIP-L vector, the "
                                   f"prompt has {found}: encode it with the model's DualCLIP (clip_l + t5xxl)")
        out["pooled_output"] = pooled
    else:
        out["pooled_output"] = None  # the key ComfyUI's Flux.encode_adm reads, empty as FLUX.2's text encoder leaves it
    references = list(references or [])
    if not references:
        raise VMDiffInputError("references: no reference image; connect the two object images (VMDiff Reference "
                               "Encode)")
    channels = model.model.latent_format.latent_channels
    for k, ref in enumerate(references, 1):
        if not isinstance(ref, torch.Tensor) or ref.ndim != 4 or ref.shape[1] != channels:
            shape = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
            raise VMDiffInputError(f"references: reference {k} is {shape}, the model's latent has {channels} "
                                   f"channels (B, {channels}, h, w): encode the image with the model's own VAE")
    out["reference_latents"] = references
    if getattr(params, "guidance_embed", False) and guidance is not None:
        out["guidance"] = guidance
    out.update(extras or {})
    return [[text, out]]
