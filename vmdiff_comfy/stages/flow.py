"""Running a ``vmdiff_ops`` flow program inside ComfyUI's sampling machinery (model management, patches, progress
bar, previews, interrupt), and the per-phase conditionings it runs under."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview

from ..errors import VMDiffInputError
from .checks import check_finite_output, check_one_prompt, text_width_problem

CONTEXT_MODES = ("redux_only", "text_and_redux", "text_and_references")
#: The mode of reference-latent models (FLUX.2, Kontext): the prompt's text tokens are the context, the images travel
#: as reference latents (stages.reference_context.reference_phase_conditioning).
TEXT_AND_REFERENCES = "text_and_references"


def phase_conditioning(conditioning, context: torch.Tensor, guidance: float, context_mode: str, vec_dim,
                       name: str = "conditioning", honoured=()) -> list:
    """One phase's CONDITIONING: the visual context (SCat or SInp), the prompt's CLIP-L pooled vector and the
    phase's Flux guidance. In ``redux_only`` (the reference) the prompt's text tokens are dropped. ``conditioning``
    must hold one prompt (``checks.check_one_prompt``: one entry of batch 1, no area / mask / … key outside
    ``honoured``); errors name the input ``name``."""
    if context_mode == TEXT_AND_REFERENCES:
        raise VMDiffInputError("context: text_and_references is for reference images (FLUX.2, Kontext: VMDiff "
                               "Reference Encode); with Redux tokens use redux_only or text_and_redux")
    check_one_prompt(name, conditioning, honoured=honoured, used="one prompt's pooled vector")
    if conditioning[0][1].get("pooled_output") is None:
        raise VMDiffInputError(f"{name}: needs a pooled CLIP-L vector; connect VMDiff Fusion Prompt "
                               "(or CLIP Text Encode) of the fusion prompt")
    text, extras = conditioning[0][0], conditioning[0][1]
    pooled = extras["pooled_output"]
    if vec_dim is not None and pooled.shape[-1] != vec_dim:
        raise VMDiffInputError(f"{name}: pooled vector is {pooled.shape[-1]} wide, the model expects "
                               f"{vec_dim} (Flux takes CLIP-L's unprojected pooled output)")
    if context_mode == "text_and_redux":
        if text.shape[-1] != context.shape[-1]:  # the Redux tokens already match the model's context width
            raise VMDiffInputError(text_width_problem(name, text.shape[-1], context.shape[-1], "Flux",
                                                      "set context to redux_only (the reference)"))
        context = torch.cat([text.to(context), context], dim=1)
    elif context_mode != "redux_only":
        raise VMDiffInputError(f"context: unknown mode {context_mode!r}; expected one of {CONTEXT_MODES}")
    return [[context, {"pooled_output": pooled, "guidance": guidance}]]


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


@dataclass
class ProgramOutput:
    """What a flow program returns: its final model-space state and any named intermediate states."""

    x: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class FlowRun:
    """A finished flow program: the final state in model space (``x``) and as a VAE latent (``latent``), plus the
    program's named intermediate states (model space)."""

    x: torch.Tensor
    latent: torch.Tensor
    extras: dict[str, torch.Tensor]


#: program(velocity_for_phase, x_start, on_step) -> ProgramOutput
FlowProgram = Callable[[Callable[[str], Callable], torch.Tensor, Callable], ProgramOutput]


class FlowProgramSampler(comfy.samplers.Sampler):
    """Runs a vmdiff_ops program as a ComfyUI Sampler: velocities come from the guider's x0 prediction,
    v = (x − x̂0)/σ (CONST), and no noise scaling is applied at either end (σ = 1 is a valid end point)."""

    def __init__(self, program: FlowProgram, total_steps: int | None = None, node: str | None = None,
                 on_pass: Callable | None = None):
        self.program = program
        self.total_steps = total_steps
        self.node = node  # checks every prediction for NaN / inf and names this node (None: the caller checks)
        self.on_pass = on_pass  # on_pass(pass number, phase, σ, x̂0) after every model pass (Auto-Tune's watch)
        self.output: ProgramOutput | None = None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        total = self.total_steps or len(sigmas) - 1
        calls = [0]

        def velocity_for(phase: str):
            def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
                comfy.model_management.throw_exception_if_processing_interrupted()
                model_wrap.phase = phase
                x0 = model_wrap(x, x.new_full((x.shape[0],), sigma), **extra_args)
                calls[0] += 1
                if self.on_pass is not None:
                    self.on_pass(calls[0], phase, sigma, x0)
                if self.node is not None:
                    check_finite_output(self.node, "the model's prediction",
                                        x0, f" at model pass {calls[0]} of {total} ({phase} phase, σ = {sigma:.4f})")
                return (x - x0) / sigma
            return velocity

        def on_step(i, x_in, sigma, v, x_out):
            if callback is not None:
                callback(i, x_in - sigma * v, x_out, total)

        self.output = self.program(velocity_for, noise.clone(), on_step)
        return self.output.x


def run_flow_program(model, phases: dict[str, list], x_start: torch.Tensor, program: FlowProgram,
                     sigmas: torch.Tensor, total_steps: int, seed: int, callback=None, negative: list | None = None,
                     cfg: float = 1.0, node: str | None = None, on_pass: Callable | None = None,
                     transformer_options: dict | None = None) -> FlowRun:
    """Run ``program`` on ``model`` from the model-space state ``x_start``. ``sigmas`` is the program's grid (it
    only fills transformer_options["sample_sigmas"] for model patches); ``total_steps`` sizes the progress bar.
    ``callback(step, x0, x, total)`` replaces the default progress bar + latent preview (Auto-Tune keeps one bar).
    ``negative`` + ``cfg`` ≠ 1: classifier-free guidance in every phase (two model evaluations per velocity).
    ``node``: the node named when the model returns NaN / inf (checked at every pass and on the result).
    ``on_pass(pass number, phase, σ, x̂0)``: called after every model pass (e.g. to watch for non-finite passes).
    ``transformer_options``: added to the model's for this run only (e.g. the reference-bias attention hook)."""
    guider = PhaseGuider(model)
    if transformer_options:
        guider.model_options = {**guider.model_options, "transformer_options": {
            **guider.model_options.get("transformer_options", {}), **transformer_options}}
    guider.set_phase_conds(phases, negative, cfg)
    sampler = FlowProgramSampler(program, total_steps, node, on_pass)
    if callback is None:
        callback = latent_preview.prepare_callback(model, total_steps)
    latent = guider.sample(x_start, torch.zeros_like(x_start), sampler, sigmas, callback=callback,
                           disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    device = comfy.model_management.intermediate_device()
    out = sampler.output
    if node is not None:
        check_finite_output(node, "the output latent", latent)
    return FlowRun(x=out.x.to(device), latent=latent.to(device),
                   extras={k: v.to(device) for k, v in out.extras.items()})
