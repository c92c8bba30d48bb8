"""The one Euler integrator of the rectified-flow ODE dx/dσ = v(x, σ), for denoising and for inversion alike."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

Velocity = Callable[[torch.Tensor, float], torch.Tensor]
#: on_step(step_index, x_in, sigma_evaluated, velocity, x_out)
StepHook = Callable[[int, torch.Tensor, float, torch.Tensor, torch.Tensor], None]

#: Where an inversion step evaluates the velocity (docs/method.md, "Blending Noise"):
#: ``lagged`` — the reference: the source latent, labelled with the destination's timestep;
#: ``exact-euler`` — the source latent at its own σ (plain explicit Euler run backwards).
INVERSION_RULES = {"lagged": "destination", "exact-euler": "source"}


@dataclass
class NFECounter:
    """Counts velocity evaluations: ``calls`` forward passes, ``samples`` latents through the DiT (sample-NFE)."""

    calls: int = 0
    samples: int = 0

    def add(self, batch: int) -> None:
        self.calls += 1
        self.samples += batch


def integrate_flow(x: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, velocity: Velocity, *,
                   evaluate_at: str = "source", counter: Optional[NFECounter] = None,
                   on_step: Optional[StepHook] = None, state_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Explicit Euler through the noise levels ``sigmas`` (decreasing: denoise; increasing: invert).

    Step i: x ← x + (σ_{i+1} − σ_i)·v(x, τ_i) with τ_i = σ_i (``evaluate_at="source"``) or σ_{i+1}
    (``"destination"``, the reference's lagged inversion). One velocity call per step.
    ``state_dtype`` (e.g. torch.bfloat16) rounds the state after every step, as the reference stores latents.
    """
    if evaluate_at not in ("source", "destination"):
        raise ValueError(f"evaluate_at must be 'source' or 'destination', got {evaluate_at!r}")
    levels = [float(s) for s in sigmas]
    for i in range(len(levels) - 1):
        sigma_from, sigma_to = levels[i], levels[i + 1]
        tau = sigma_from if evaluate_at == "source" else sigma_to
        v = velocity(x, tau)
        if counter is not None:
            counter.add(x.shape[0])
        x_next = x + (sigma_to - sigma_from) * v
        if state_dtype is not None:
            x_next = x_next.to(state_dtype).to(x.dtype)
        if on_step is not None:
            on_step(i, x, tau, v, x_next)
        x = x_next
    return x


def shifted_hook(hook: Optional[StepHook], offset: int) -> Optional[StepHook]:
    """``hook`` seeing step indices moved by ``offset`` (one progress count over several integrations)."""
    if hook is None:
        return None
    return lambda i, *rest: hook(i + offset, *rest)
