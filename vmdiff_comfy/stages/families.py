"""Model families of the reference-image path: which family a MODEL is, its σ grid, and one table of stage
defaults per family (steps, t_den, guidance). Sources and choices: docs/reference_models_defaults.md.

The family follows ComfyUI's own model config (``model.model.model_config.unet_config["image_model"]``): "flux" is
the FLUX.1 architecture (FLUX.1 [dev] / Krea with Redux, and FLUX.1 Kontext, which has the same weights' layout),
"flux2" is FLUX.2 ([dev] or [klein]). Within a family the variants are told apart only where the weights differ in
layout (FLUX.2 [dev] embeds guidance, [klein] does not); Kontext vs FLUX.1 [dev], and [klein] distilled vs base, have
identical layouts, so the user names the variant (``FAMILY_DEFAULTS`` key) and ``default_variant`` only guesses."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ...vmdiff_ops.schedule import family_sigma_grid
from ..errors import VMDiffInputError

#: ComfyUI ``image_model`` → the pack's σ-grid family (vmdiff_ops.schedule.family_sigma_grid).
IMAGE_MODEL_FAMILIES = {"flux": "flux1", "flux2": "flux2"}


def model_family(model) -> str:
    """"flux1" or "flux2" for a ComfyUI MODEL (ModelPatcher), from its model config's ``image_model``. Raises
    VMDiffInputError naming the model input for any other model."""
    config = getattr(getattr(getattr(model, "model", None), "model_config", None), "unet_config", None) or {}
    image_model = config.get("image_model")
    if image_model not in IMAGE_MODEL_FAMILIES:
        found = type(getattr(model, "model", model)).__name__
        raise VMDiffInputError(
            f"model: VMDiff's reference path runs on FLUX.1 (dev, Krea, Kontext) and FLUX.2 ([dev], [klein]); got "
            f"{found} (image_model {image_model!r}). Load one of those with Load Diffusion Model.")
    return IMAGE_MODEL_FAMILIES[image_model]


def sigma_grid_for_model(model, steps: int, width: int, height: int) -> torch.Tensor:
    """The σ grid (steps + 1 values, 1 → 0, float32) ComfyUI samples ``model``'s family on, for an image of
    ``width`` × ``height`` pixels: FLUX.1's μ-shifted grid (the FLUX.1 + Redux stages' grid, unchanged) or core
    ``Flux2Scheduler``'s for FLUX.2. Raises VMDiffInputError for another model or a bad step count."""
    family = model_family(model)
    try:
        return family_sigma_grid(family, steps, width, height)
    except ValueError as error:
        raise VMDiffInputError(f"steps: {error}") from None


@dataclass(frozen=True)
class FamilyDefaults:
    """Stage defaults of one model variant. ``guidance_*`` is the embedded (distilled) guidance a FLUX model reads
    from the conditioning, None where the model has no guidance embedding; ``cfg`` is classifier-free guidance
    (two DiT passes per step when ≠ 1, with a negative prompt), used by undistilled models only. ``t_den_step``: the
    step whose σ is nearest the paper's σ_den = 0.6525 on the family's grid at 512² (vmdiff_ops
    ``t_den_step_for_sigma``; at most steps − 2). ``latent_scale``: image pixels per latent cell (FLUX.1 8,
    FLUX.2 16)."""

    label: str
    family: str  # σ-grid family
    steps: int
    t_den_step: int
    guidance_denoise: float | None
    guidance_invert: float | None
    guidance: float | None
    cfg: float
    context: str
    latent_scale: int
    comfyui: str  # the ComfyUI version that loads the real model

    def stage_values(self) -> dict:
        """The values for StageSettings / the stage widgets (guidance None → 0.0: ignored by a model without a
        guidance embedding)."""
        values = {k: v for k, v in asdict(self).items()
                  if k in ("steps", "t_den_step", "guidance_denoise", "guidance_invert", "guidance", "context")}
        return {k: (0.0 if v is None else v) for k, v in values.items()}

    @property
    def passes_per_step(self) -> int:
        """DiT passes per sampling step (NFE per step): 2 under classifier-free guidance, else 1."""
        return 2 if self.cfg != 1.0 else 1


#: One table, keyed by variant. Where each value comes from: docs/reference_models_defaults.md.
FAMILY_DEFAULTS: dict[str, FamilyDefaults] = {
    "flux1_dev_redux": FamilyDefaults(
        "FLUX.1 [dev] / Krea + Redux (the paper's setting)", "flux1", steps=20, t_den_step=10, guidance_denoise=5.0,
        guidance_invert=0.0, guidance=4.0, cfg=1.0, context="redux_only", latent_scale=8, comfyui="0.8.0"),
    "flux1_kontext": FamilyDefaults(
        "FLUX.1 Kontext [dev]", "flux1", steps=20, t_den_step=10, guidance_denoise=3.1, guidance_invert=0.0,
        guidance=2.5, cfg=1.0, context="text_and_references", latent_scale=8, comfyui="0.8.0"),
    "flux2_klein": FamilyDefaults(
        "FLUX.2 [klein] 4B / 9B, distilled", "flux2", steps=4, t_den_step=2, guidance_denoise=None,
        guidance_invert=None, guidance=None, cfg=1.0, context="text_and_references", latent_scale=16,
        comfyui="about 0.9.2"),
    "flux2_klein_base": FamilyDefaults(
        "FLUX.2 [klein] Base 4B / 9B (undistilled)", "flux2", steps=20, t_den_step=16, guidance_denoise=None,
        guidance_invert=None, guidance=None, cfg=4.0, context="text_and_references", latent_scale=16,
        comfyui="about 0.9.2"),
    "flux2_dev": FamilyDefaults(
        "FLUX.2 [dev]", "flux2", steps=20, t_den_step=16, guidance_denoise=5.0, guidance_invert=0.0, guidance=4.0,
        cfg=1.0, context="text_and_references", latent_scale=16, comfyui="0.8.0"),
}


def family_defaults(variant: str) -> FamilyDefaults:
    """The defaults of ``variant`` (a ``FAMILY_DEFAULTS`` key); raises VMDiffInputError naming the choices."""
    if variant not in FAMILY_DEFAULTS:
        raise VMDiffInputError(f"model_variant: unknown {variant!r}; expected one of {', '.join(FAMILY_DEFAULTS)}")
    return FAMILY_DEFAULTS[variant]


def default_variant(model) -> str:
    """The variant a MODEL most likely is, from what its layout shows: FLUX.2 with a guidance embedding → flux2_dev,
    FLUX.2 without → flux2_klein (the distilled one, which the shipped FLUX.2 workflow uses; Base has the same
    layout); FLUX.1 → flux1_dev_redux (Kontext has the same layout: name it)."""
    family = model_family(model)
    if family == "flux2":
        params = getattr(model.model.diffusion_model, "params", None)
        return "flux2_dev" if getattr(params, "guidance_embed", False) else "flux2_klein"
    return "flux1_dev_redux"


def latent_scale_for_model(model) -> int:
    """Image pixels per latent cell of ``model``'s family: 8 (FLUX.1, 16-channel VAE) or 16 (FLUX.2, 32-channel VAE
    patchified 2×2 to 128 channels)."""
    return 16 if model_family(model) == "flux2" else 8
