"""The pack's socket types and the values that travel on them."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from comfy_api.latest import io

from ..errors import VMDiffInputError

#: ComfyUI socket type of a Redux token set (one image's z_k).
ReduxTokensType = io.Custom("VMDIFF_REDUX_TOKENS")
#: ComfyUI socket type of a scorer: an object with ``score(images) -> list[dict]`` (S and its terms per image).
ScorerType = io.Custom("VMDIFF_SCORER")
#: ComfyUI socket type of a :class:`~.settings.StageSettings` (VMDiff Stage Settings → the stage nodes).
StageSettingsType = io.Custom("VMDIFF_STAGE_SETTINGS")

#: Marker on a LATENT dict whose "samples" hold a model-space noise tensor at σ = 1 (ε_b), not a VAE latent.
NOISE_SPACE_KEY = "vmdiff_noise_space"


@dataclass(frozen=True)
class ReduxTokens:
    """z_k of the paper: the Redux token set of one image, with the identity of the encoders that made it."""

    tokens: torch.Tensor  # (1, N, C)
    encoder_id: str
    info: dict = field(default_factory=dict, compare=False)


def fingerprint(*modules: torch.nn.Module) -> str:
    """A short identity of model weights: shapes plus a few values of every tensor (cheap, order-stable)."""
    h = hashlib.sha1()
    for module in modules:
        for name, tensor in module.state_dict().items():
            h.update(f"{name}{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().flatten()[:8].float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def noise_space_latent(samples: torch.Tensor, **info) -> dict:
    """Wrap a model-space tensor at σ = 1 (ε, ε_b) as a LATENT marked as noise space."""
    return {"samples": samples, NOISE_SPACE_KEY: True, "vmdiff": info}


def noise_from_latent(latent: dict, input_name: str) -> torch.Tensor:
    if not isinstance(latent, dict) or not latent.get(NOISE_SPACE_KEY):
        raise VMDiffInputError(f"{input_name}: expected the eps_b output of VMDiff Blending Noise (a noise-space "
                               f"LATENT); a VAE latent such as Empty Latent Image cannot be used here")
    from .checks import as_float32  # checks imports this module

    samples = as_float32(input_name, latent["samples"], "LATENT")
    if not torch.isfinite(samples).all():
        raise VMDiffInputError(f"{input_name}: the noise contains NaN or infinite values; connect a fresh eps_b from "
                               f"VMDiff Blending Noise (if it made the NaN, its model overflowed: try another "
                               f"weight_dtype)")
    return samples


class BlendedNoise:
    """ComfyUI NOISE holding ε_b, so stock SamplerCustomAdvanced graphs can start from it (σ_0 must be 1)."""

    def __init__(self, eps_b: torch.Tensor, seed: int):
        self.eps_b = eps_b
        self.seed = seed

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        shape = tuple(input_latent["samples"].shape)
        if shape[1:] != tuple(self.eps_b.shape[1:]):
            raise VMDiffInputError(f"noise: ε_b has shape {tuple(self.eps_b.shape)} but the latent_image is "
                                   f"{shape}; use an empty latent of the Blending Noise width and height")
        return self.eps_b.expand(shape[0], *self.eps_b.shape[1:]).clone()


@dataclass(frozen=True)
class ReferenceLatents:
    """One or more reference images as VAE latents (what core's ReferenceLatent appends to a conditioning), with a
    per-reference attention-logit bias (vmdiff_ops.reference). Travels on the token-set socket, so a graph changes
    from Redux to a reference-latent model (FLUX.1 Kontext, FLUX.2) by swapping Redux Encode for Reference Encode."""

    latents: tuple  # each (1, C, h, w) in the VAE's latent space, as VAEEncode gives it
    bias: tuple  # b_k per reference: 0 = as in plain multi-reference sampling, −inf = not seen
    encoder_id: str
    info: dict = field(default_factory=dict, compare=False)
