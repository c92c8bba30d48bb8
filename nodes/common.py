"""Glue shared by the VMDiff nodes: the token-set type, input checks, and running a vmdiff_ops flow program
inside ComfyUI's sampling machinery (model management, patches, progress bar, previews, interrupt)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import torch

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..vmdiff_comfy.errors import VMDiffInputError  # noqa: F401  (re-exported for the nodes)

#: ComfyUI socket type of a Redux token set (one image's z_k).
ReduxTokensType = io.Custom("VMDIFF_REDUX_TOKENS")
#: ComfyUI socket type of a scorer: an object with ``score(images) -> list[dict]`` (S and its terms per image).
ScorerType = io.Custom("VMDIFF_SCORER")

#: Marker on a LATENT dict whose "samples" hold a model-space noise tensor at σ = 1 (ε_b), not a VAE latent.
NOISE_SPACE_KEY = "vmdiff_noise_space"

CONTEXT_MODES = ("redux_only", "text_and_redux")


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


def flux_model_info(model) -> dict:
    """What the pack needs to know of a MODEL; raises if it is not a rectified-flow model."""
    sampling = model.get_model_object("model_sampling")
    if not isinstance(sampling, comfy.model_sampling.CONST):
        raise VMDiffInputError(
            f"model: VMDiff needs a rectified-flow model such as FLUX.1 dev/Krea; got {type(model.model).__name__} "
            f"with {type(sampling).__name__} sampling. Load a Flux checkpoint with Load Diffusion Model.")
    params = getattr(model.model.diffusion_model, "params", None)
    return {
        "context_dim": getattr(params, "context_in_dim", None),
        "vec_dim": getattr(params, "vec_in_dim", None),
        "guidance_embed": getattr(params, "guidance_embed", True),
        "latent_channels": model.model.latent_format.latent_channels,
    }


def check_token_pair(tokens_1: ReduxTokens, tokens_2: ReduxTokens | None, model_info: dict) -> None:
    """z1 and z2 must come from the same CLIP-vision + Redux pair and fit the model's context width.
    ``tokens_2`` None: tokens_1 is a ready condition (VMDiff Mix Tokens N) and is checked alone."""
    named = [("tokens_1", tokens_1)] + ([] if tokens_2 is None else [("tokens_2", tokens_2)])
    for name, t in named:
        check_is_tokens(name, t)
        if not torch.isfinite(t.tokens).all():
            raise VMDiffInputError(f"{name}: the token set contains NaN or infinite values; re-encode the image "
                                   f"with VMDiff Redux Encode (check its image and its CLIP vision / Redux models)")
        if model_info["context_dim"] is not None and t.tokens.shape[-1] != model_info["context_dim"]:
            raise VMDiffInputError(
                f"{name}: tokens are {t.tokens.shape[-1]} wide but the model's context expects "
                f"{model_info['context_dim']}; encode with the Redux model made for this Flux model")
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


def grid_problems(steps, t_den_step) -> list[str]:
    """steps / t_den_step of Blending Noise and Auto-Tune: t_den is a step index of the grid, at most steps − 2."""
    problems = widget_problems({"steps": (2, 200), "t_den_step": (0, 198)}, steps=steps, t_den_step=t_den_step)
    if not problems and steps is not None and t_den_step is not None and t_den_step > steps - 2:
        problems.append(f"t_den_step: {t_den_step} is outside the {steps}-step grid; use 0…{steps - 2}")
    return problems


def phase_conditioning(conditioning, context: torch.Tensor, guidance: float, context_mode: str, vec_dim) -> list:
    """One phase's CONDITIONING: the visual context (SCat or SInp), the prompt's CLIP-L pooled vector and the
    phase's Flux guidance. In ``redux_only`` (the reference) the prompt's text tokens are dropped."""
    if not conditioning or conditioning[0][1].get("pooled_output") is None:
        raise VMDiffInputError("conditioning: needs a pooled CLIP-L vector; connect VMDiff Fusion Prompt "
                               "(or CLIP Text Encode) of the fusion prompt")
    text, extras = conditioning[0][0], conditioning[0][1]
    pooled = extras["pooled_output"]
    if vec_dim is not None and pooled.shape[-1] != vec_dim:
        raise VMDiffInputError(f"conditioning: pooled vector is {pooled.shape[-1]} wide, the model expects "
                               f"{vec_dim} (Flux takes CLIP-L's unprojected pooled output)")
    if context_mode == "text_and_redux":
        context = torch.cat([text.to(context), context], dim=1)
    elif context_mode != "redux_only":
        raise VMDiffInputError(f"context: unknown mode {context_mode!r}; expected one of {CONTEXT_MODES}")
    return [[context, {"pooled_output": pooled, "guidance": guidance}]]


def noise_space_latent(samples: torch.Tensor, **info) -> dict:
    """Wrap a model-space tensor at σ = 1 (ε, ε_b) as a LATENT marked as noise space."""
    return {"samples": samples, NOISE_SPACE_KEY: True, "vmdiff": info}


def noise_from_latent(latent: dict, input_name: str) -> torch.Tensor:
    if not isinstance(latent, dict) or not latent.get(NOISE_SPACE_KEY):
        raise VMDiffInputError(f"{input_name}: expected the eps_b output of VMDiff Blending Noise (a noise-space "
                               f"LATENT); a VAE latent such as Empty Latent Image cannot be used here")
    samples = latent["samples"]
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


class PhaseGuider(comfy.samplers.CFGGuider):
    """A guider holding one conditioning per named phase, so that a multi-phase program (BNoise: γ_den then γ_inv)
    loads the model once and runs under one progress bar. One pass (cfg 1) unless a negative and a cfg ≠ 1 are
    given (classifier-free guidance of ε-prediction models such as SD1.5; the negative is shared by all phases)."""

    NEGATIVE = "negative"

    def set_phase_conds(self, phases: dict[str, list], negative: list | None = None, cfg: float = 1.0) -> None:
        self.inner_set_conds(dict(phases, **({self.NEGATIVE: negative} if negative is not None else {})))
        self.cfg = cfg
        self.phase = next(iter(phases))

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        return comfy.samplers.sampling_function(self.inner_model, x, timestep, self.conds.get(self.NEGATIVE),
                                                self.conds[self.phase], self.cfg, model_options=model_options,
                                                seed=seed)


#: program(velocity_for_phase, x_start, on_step) -> dict of output tensors, with the final state under "x"
FlowProgram = Callable[[Callable[[str], Callable], torch.Tensor, Callable], dict]


class FlowProgramSampler(comfy.samplers.Sampler):
    """Runs a vmdiff_ops program as a ComfyUI Sampler: velocities come from the guider's x0 prediction,
    v = (x − x̂0)/σ (CONST), and no noise scaling is applied at either end (σ = 1 is a valid end point)."""

    def __init__(self, program: FlowProgram, total_steps: int | None = None):
        self.program = program
        self.total_steps = total_steps
        self.outputs: dict = {}

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        total = self.total_steps or len(sigmas) - 1

        def velocity_for(phase: str):
            def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
                comfy.model_management.throw_exception_if_processing_interrupted()
                model_wrap.phase = phase
                x0 = model_wrap(x, x.new_full((x.shape[0],), sigma), **extra_args)
                return (x - x0) / sigma
            return velocity

        def on_step(i, x_in, sigma, v, x_out):
            if callback is not None:
                callback(i, x_in - sigma * v, x_out, total)

        self.outputs = self.program(velocity_for, noise.clone(), on_step)
        return self.outputs["x"]


def run_flow_program(model, phases: dict[str, list], x_start: torch.Tensor, program: FlowProgram,
                     sigmas: torch.Tensor, total_steps: int, seed: int, callback=None, negative: list | None = None,
                     cfg: float = 1.0) -> dict:
    """Run ``program`` on ``model`` from the model-space state ``x_start``; returns the program's outputs
    (model space) plus "latent": the final state in VAE-latent space. ``sigmas`` is the program's grid (it only
    fills transformer_options["sample_sigmas"] for model patches); ``total_steps`` sizes the progress bar.
    ``callback(step, x0, x, total)`` replaces the default progress bar + latent preview (Auto-Tune keeps one bar).
    ``negative`` + ``cfg`` ≠ 1: classifier-free guidance in every phase (two model evaluations per velocity)."""
    guider = PhaseGuider(model)
    guider.set_phase_conds(phases, negative, cfg)
    sampler = FlowProgramSampler(program, total_steps)
    if callback is None:
        callback = latent_preview.prepare_callback(model, total_steps)
    latent = guider.sample(x_start, torch.zeros_like(x_start), sampler, sigmas, callback=callback,
                           disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    outputs = {k: v.to(comfy.model_management.intermediate_device()) for k, v in sampler.outputs.items()}
    outputs["latent"] = latent.to(comfy.model_management.intermediate_device())
    return outputs


MODEL_FILE_SUFFIXES = (".safetensors", ".sft", ".gguf", ".pth", ".pt", ".ckpt", ".bin")


def upstream_model_files(prompt: dict | None, node_id: str | None) -> dict:
    """The model files feeding ``node_id`` in an API prompt: {"<class_type>.<input>": file name} of every upstream
    node input whose value names a model file (for the replay metadata of a result)."""
    if not prompt or node_id is None or str(node_id) not in prompt:
        return {}
    found, seen, stack = {}, set(), [str(node_id)]
    while stack:
        current = stack.pop()
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        node = prompt[current]
        for name, value in node.get("inputs", {}).items():
            if isinstance(value, list) and len(value) == 2:
                stack.append(str(value[0]))
            elif isinstance(value, str) and value.lower().endswith(MODEL_FILE_SUFFIXES):
                found[f"{node['class_type']}.{name}"] = value
    return dict(sorted(found.items()))
