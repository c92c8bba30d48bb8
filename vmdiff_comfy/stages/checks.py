"""Input checks shared by the stages; each error names the input and the fix."""
from __future__ import annotations

from dataclasses import dataclass

import torch

import comfy.model_sampling

from ..errors import VMDiffInputError
from .sockets import ReduxTokens


@dataclass(frozen=True)
class ModelInfo:
    """What the stages need to know of a MODEL."""

    context_dim: int | None
    vec_dim: int | None
    guidance_embed: bool
    latent_channels: int
    #: a node upstream replaced the model's sampling (e.g. ModelSamplingFlux's shift); the VMDiff σ grid ignores it
    sampling_patched: bool = False


#: What a stage node says when the MODEL's sampling patch was not used (issue 13 item 5).
SAMPLING_PATCH_NOTE = ("the MODEL carries a sampling patch (e.g. ModelSamplingFlux's shift); it was not used: the "
                       "σ grid comes from the image size (μ of the reference schedule)")


def flux_model_info(model) -> ModelInfo:
    """What the pack needs to know of a MODEL; raises if it is not a rectified-flow model."""
    sampling = model.get_model_object("model_sampling")
    if not isinstance(sampling, comfy.model_sampling.CONST):
        raise VMDiffInputError(
            f"model: VMDiff needs a rectified-flow model such as FLUX.1 dev/Krea; got {type(model.model).__name__} "
            f"with {type(sampling).__name__} sampling. Load a Flux checkpoint with Load Diffusion Model.")
    params = getattr(model.model.diffusion_model, "params", None)
    return ModelInfo(context_dim=getattr(params, "context_in_dim", None), vec_dim=getattr(params, "vec_in_dim", None),
                     guidance_embed=getattr(params, "guidance_embed", True),
                     latent_channels=model.model.latent_format.latent_channels,
                     sampling_patched="model_sampling" in getattr(model, "object_patches", {}))


def check_token_pair(tokens_1: ReduxTokens, tokens_2: ReduxTokens | None, model_info: ModelInfo) -> None:
    """z1 and z2 must come from the same CLIP-vision + Redux pair and fit the model's context width.
    ``tokens_2`` None: tokens_1 is a ready condition (VMDiff Mix Tokens N) and is checked alone."""
    named = [("tokens_1", tokens_1)] + ([] if tokens_2 is None else [("tokens_2", tokens_2)])
    for name, t in named:
        check_is_tokens(name, t)
        if not torch.isfinite(t.tokens).all():
            raise VMDiffInputError(f"{name}: the token set contains NaN or infinite values; re-encode the image "
                                   f"with VMDiff Redux Encode (check its image and its CLIP vision / Redux models)")
        if model_info.context_dim is not None and t.tokens.shape[-1] != model_info.context_dim:
            raise VMDiffInputError(
                f"{name}: tokens are {t.tokens.shape[-1]} wide but the model's context expects "
                f"{model_info.context_dim}; encode with the Redux model made for this Flux model")
    check_same_encoder(named)


def check_is_tokens(name: str, tokens) -> None:
    if not isinstance(tokens, ReduxTokens):
        raise VMDiffInputError(f"{name}: expected a VMDiff Redux Encode output, got {type(tokens).__name__}")


def check_same_encoder(named: list[tuple[str, ReduxTokens]]) -> None:
    """Every token set of ``named`` ([(input name, z_k)]) must come from the CLIP vision + Redux pair of the first."""
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.encoder_id != first.encoder_id or t.tokens.shape != first.tokens.shape:
            raise VMDiffInputError(
                f"{name}: made by a different CLIP vision / Redux model than {first_name} "
                f"(encoder {t.encoder_id} vs {first.encoder_id}, shapes {tuple(t.tokens.shape)} vs "
                f"{tuple(first.tokens.shape)}); encode {'both' if len(named) == 2 else 'all'} images with the same "
                f"loaders")


def check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value % 16 or value < 16:
            raise VMDiffInputError(f"{name}: {value} is not a positive multiple of 16 (Flux packs 2×2 latent patches "
                                   f"of an 8× VAE); try {max(16, round(value / 16) * 16)}")


def widget_problems(ranges: dict, **values) -> list[str]:
    """For a node's ``validate_inputs``: ComfyUI skips its own min/max check of every input that validate_inputs
    takes, so the ranges are checked here (``ranges``: name -> (min, max)). An input fed by a link arrives as None
    at validation time and is checked when the node runs."""
    problems = []
    for name, value in values.items():
        low, high = ranges.get(name, (None, None))
        if value is not None and low is not None and value < low:
            problems.append(f"{name}: {value} is below the minimum {low}")
        elif value is not None and high is not None and value > high:
            problems.append(f"{name}: {value} is above the maximum {high}")
    return problems
