"""Input checks shared by the stages; each error names the input and the fix."""
from __future__ import annotations

from dataclasses import dataclass

import torch

import comfy.model_sampling

from ..errors import VMDiffInputError
# the range checks of node inputs live with the error type; named here too for the callers of this module
from ..errors import guard_inputs, number_problem, schema_problems  # noqa: F401
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


#: What a stage node says when the MODEL's sampling patch was not used.
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


#: The likely cause and fix of a non-finite model output.
OVERFLOW_FIX = ("likely an fp16/fp8 overflow of the model: load it with weight_dtype 'default' (bf16) in Load "
                "Diffusion Model, or a bf16 / fp8_e4m3fn-scaled checkpoint (ComfyUI: no --fp16-unet / --fp8 flags)")


def check_finite_output(node: str, what: str, tensor: torch.Tensor, where: str = "", fix: str = OVERFLOW_FIX) -> None:
    """A node's own output (latent, image, score) must be finite: else stop with the node, the step (``where``) and
    the likely cause and fix, instead of passing a black image on."""
    tensor = torch.as_tensor(tensor)
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise VMDiffInputError(f"{node}: {what}{where} has {bad} NaN or infinite value(s) of {tensor.numel()}; "
                               f"{fix}")


#: The text encoder a conditioning width comes from (what a message tells the user to load).
TEXT_ENCODERS = {768: "CLIP-L (SD1.x; the pack's Fusion Prompt)", 1024: "OpenCLIP-H (SD2.x)",
                 2048: "CLIP-L + CLIP-G (SDXL)", 4096: "T5-XXL (Flux, SD3)"}


def text_width_problem(name: str, width: int, needed: int, family: str, alternative: str = "") -> str:
    """The message for text tokens of the wrong encoder: which encoder made them, which one the model needs."""
    need = ("Flux text needs T5-XXL (DualCLIPLoader: clip_l + t5xxl, type flux)" if family == "Flux" else
            f"{family} text needs {TEXT_ENCODERS.get(needed, f'a {needed}-wide text encoder')}")
    made = TEXT_ENCODERS.get(width, "another text encoder")
    return (f"{name}: its text tokens are {width} wide ({made}) but the model takes {needed}: {need}"
            + (f"; or {alternative}" if alternative else ""))


#: Conditioning keys a node that reads only the prompt (its pooled vector, or its text tokens) would drop without a
#: word: key → (the stock node that sets it, the value that changes nothing).
CONDITIONING_EXTRAS = {
    "area": ("ConditioningSetArea", None), "set_area_to_bounds": ("ConditioningSetMask", False),
    "mask": ("ConditioningSetMask", None), "mask_strength": ("ConditioningSetMask", 1.0),
    "strength": ("ConditioningSetAreaStrength / ConditioningSetArea", 1.0),
    "start_percent": ("ConditioningSetTimestepRange", 0.0), "end_percent": ("ConditioningSetTimestepRange", 1.0),
    "control": ("Apply ControlNet", None), "gligen": ("GLIGENTextBoxApply", None),
    "hooks": ("Cond Set Props / hook nodes", None), "reference_latents": ("ReferenceLatent", None),
    "unclip_conditioning": ("unCLIPConditioning", None),
}
#: Not refused: a Flux ``guidance`` (FluxGuidance, CLIPTextEncodeFlux always sets one) — the VMDiff stages set the
#: guidance of each phase from their own widgets (γ_den, γ_inv, γ_gen), as their tooltips say.
EXTRA_FIX: dict[str, str] = {}


def check_one_prompt(name: str, conditioning, *, several_entries: bool = False, honoured=(),
                     used: str = "one prompt") -> None:
    """A CONDITIONING ([[text tokens (B, N, C), {pooled_output (B, C), …}], …]) that the node can
    use whole. Refuses, naming ``name`` and the fix: no entry; more than one entry (ConditioningCombine /
    Concat) unless ``several_entries`` (the node hands it to ComfyUI's sampler, which applies them all); a batch of
    more than one prompt (ComfyUI's sampler would keep the first); entries whose pooled vectors differ in width;
    and any key of CONDITIONING_EXTRAS not in ``honoured`` with a value that changes something (an area, a mask, a
    strength ≠ 1, a timestep range, a ControlNet …), which the node would otherwise drop silently."""
    if not isinstance(conditioning, list):
        raise VMDiffInputError(f"{name}: expected a CONDITIONING (from a text encode), got {conditioning!r:.40}")
    if not conditioning:
        raise VMDiffInputError(f"{name}: the CONDITIONING holds no prompt (0 entries); connect a text encode "
                               f"(VMDiff Fusion Prompt or CLIP Text Encode)")
    for k, entry in enumerate(conditioning):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], torch.Tensor)
                and isinstance(entry[1], dict)):
            raise VMDiffInputError(f"{name}: entry {k + 1} is not a [text tokens, options] pair; connect the output of "
                                   f"a text encode (VMDiff Fusion Prompt or CLIP Text Encode)")
    if len(conditioning) > 1 and not several_entries:
        raise VMDiffInputError(
            f"{name}: the CONDITIONING holds {len(conditioning)} prompts (entries), e.g. from ConditioningCombine; "
            f"this node uses {used}, so the others would be lost: connect one prompt (VMDiff Fusion Prompt or one "
            f"CLIP Text Encode) directly")
    widths = set()
    for k, (text, extras) in enumerate(conditioning, start=1):
        pooled = extras.get("pooled_output")
        batches = {text.shape[0]} | ({pooled.shape[0]} if isinstance(pooled, torch.Tensor) and pooled.ndim > 1
                                     else set())
        if max(batches) != 1:
            where = f" (entry {k})" if len(conditioning) > 1 else ""
            raise VMDiffInputError(
                f"{name}: a batch of {max(batches)} prompts{where}; ComfyUI would keep only the first and drop the "
                f"rest without a word: connect one prompt (encode one text; run the others as separate prompts)")
        if isinstance(pooled, torch.Tensor):
            widths.add(pooled.shape[-1])
        for key, (maker, neutral) in CONDITIONING_EXTRAS.items():
            if key in honoured or key not in extras or extras[key] is None:
                continue
            value = extras[key]
            if neutral is not None and not isinstance(value, torch.Tensor) and value == neutral:
                continue
            raise VMDiffInputError(
                f"{name}: carries {key!r} (from {maker}), which this node does not apply — it would be dropped "
                f"without a word; {EXTRA_FIX.get(key, f'connect the prompt without {maker}')}")
    if len(widths) > 1:
        raise VMDiffInputError(f"{name}: its entries have pooled vectors of different widths ({sorted(widths)}): "
                               f"they come from different text encoders; encode every prompt with the same CLIP")


def check_conditioning(name: str, conditioning, model, alternative: str = "", *, several_entries: bool = True,
                       honoured=tuple(CONDITIONING_EXTRAS)) -> None:
    """A CONDITIONING fed to ``model`` must come from the text encoder that model was trained with
    (context width; Flux: also the pooled CLIP-L width), else a message naming the input and the encoder it needs,
    instead of a matmul error inside the model. ``alternative``: another fix the node offers. Its
    entries and batch are checked by ``check_one_prompt`` (by default as ComfyUI's sampler takes a conditioning:
    several entries and every key honoured, but one prompt per entry)."""
    check_one_prompt(name, conditioning, several_entries=several_entries, honoured=honoured)
    params = getattr(model.model.diffusion_model, "params", None)
    if hasattr(params, "context_in_dim"):
        family, context_dim, vec_dim = "Flux", params.context_in_dim, getattr(params, "vec_in_dim", None)
    else:
        family, vec_dim = type(model.model.model_config).__name__, None
        context_dim = model.model.model_config.unet_config.get("context_dim")
    for text, extras in conditioning:
        if context_dim is not None and text.shape[-1] != context_dim:
            raise VMDiffInputError(text_width_problem(name, text.shape[-1], context_dim, family, alternative))
        pooled = extras.get("pooled_output")
        if vec_dim is not None and pooled is not None and pooled.shape[-1] != vec_dim:
            raise VMDiffInputError(f"{name}: its pooled vector is {pooled.shape[-1]} wide, the model expects "
                                   f"{vec_dim} (Flux takes CLIP-L's pooled output: encode with CLIP-L)")


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
    if tokens_2 is not None:
        for name, t in named:
            if ready_kind(t):
                raise VMDiffInputError(
                    f"{name}: is already the {ready_kind(t)} of {', '.join(ready_sets(t))} from VMDiff Mix Tokens N; a "
                    f"ready set goes into tokens_1 alone: leave tokens_2 unconnected (or connect two VMDiff Redux "
                    f"Encode outputs)")
    check_same_encoder(named)


def ready_kind(tokens: ReduxTokens) -> str:
    """"SCat (concat)" / "SInp (mix)" for a ready set of VMDiff Mix Tokens N, "" for one image's z_k."""
    return "SCat (concat)" if "concat" in tokens.info else "SInp (mix)" if "mixed" in tokens.info else ""


def ready_sets(tokens: ReduxTokens) -> list[str]:
    return list(tokens.info.get("concat") or tokens.info.get("mixed") or [])


def check_is_tokens(name: str, tokens) -> None:
    if not isinstance(tokens, ReduxTokens):
        raise VMDiffInputError(f"{name}: expected a VMDiff Redux Encode output, got {type(tokens).__name__}")


def check_same_encoder(named: list[tuple[str, ReduxTokens]]) -> None:
    """Every token set of ``named`` ([(input name, z_k)]) must come from the CLIP vision + Redux pair of the first."""
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.encoder_id == first.encoder_id and t.tokens.shape != first.tokens.shape:  # same encoder: say what differs
            ready = next(((n, x) for n, x in named if ready_kind(x)), None)
            raise VMDiffInputError(
                f"{ready[0]}: is already the {ready_kind(ready[1])} of {', '.join(ready_sets(ready[1]))} (VMDiff Mix "
                f"Tokens N), {ready[1].tokens.shape[1]} tokens; connect single VMDiff Redux Encode outputs here"
                if ready else
                f"{name}: {t.tokens.shape[1]} tokens × {t.tokens.shape[2]}, {first_name} {first.tokens.shape[1]} × "
                f"{first.tokens.shape[2]}, from the same encoder; encode each image once with VMDiff Redux Encode "
                f"(one image per token set)")
        if t.encoder_id != first.encoder_id or t.tokens.shape != first.tokens.shape:
            raise VMDiffInputError(
                f"{name}: made by a different CLIP vision / Redux model than {first_name} "
                f"(encoder {t.encoder_id} vs {first.encoder_id}, shapes {tuple(t.tokens.shape)} vs "
                f"{tuple(first.tokens.shape)}); encode {'both' if len(named) == 2 else 'all'} images with the same "
                f"loaders")


def check_image(name: str, image) -> None:
    """An IMAGE input (B, H, W, C) that can be used at all: a non-empty batch of non-empty, finite images with 1, 3
    or 4 channels; else a message naming the input, not a raw interpolate / cat error further on."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise VMDiffInputError(f"{name}: expected an IMAGE (B, H, W, C), got {shape}")
    batch, height, width, channels = image.shape
    if batch == 0:
        raise VMDiffInputError(f"{name}: an empty batch (0 images); connect at least one image (a filter or "
                               f"ImageFromBatch upstream left nothing)")
    if height == 0 or width == 0:
        raise VMDiffInputError(f"{name}: the image is {width}×{height} pixels (empty); connect a real image (a crop "
                               f"or resize upstream produced nothing)")
    if channels not in (1, 3, 4):
        raise VMDiffInputError(f"{name}: images need 1, 3 or 4 channels, got {channels}")


def as_float32(name: str, tensor, kind: str = "IMAGE"):
    """An IMAGE / MASK / LATENT tensor of another float dtype (float16, bfloat16, float64, fp8; or
    bool) as float32, converted once at the node boundary (libraries downstream — PIL, numpy, bicubic resizes —
    have no half-precision kernels). A float32 tensor (and anything that is not a tensor: the other checks name it)
    comes back as the same object, so valid inputs stay bit-identical. Raises VMDiffInputError naming ``name`` for
    integer or complex values (an 8-bit 0…255 image is not a ComfyUI IMAGE)."""
    if not isinstance(tensor, torch.Tensor) or tensor.dtype == torch.float32:
        return tensor
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        return tensor.float()
    raise VMDiffInputError(f"{name}: a {kind} of {str(tensor.dtype).removeprefix('torch.')} values; ComfyUI {kind}s "
                           f"hold floats (images in [0, 1]): convert it upstream (an 8-bit image: divide by 255)")


def image_input(name: str, image) -> torch.Tensor:
    """An IMAGE input checked (``check_image``) and as float32 (``as_float32``): the one entry point of every node's
    IMAGE. Returns the (B, H, W, C) float32 tensor."""
    check_image(name, image)
    return as_float32(name, image)


def check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value % 16 or value < 16:
            raise VMDiffInputError(f"{name}: {value} is not a positive multiple of 16 (Flux packs 2×2 latent patches "
                                   f"of an 8× VAE); try {max(16, round(value / 16) * 16)}")

