"""Blending Noise (BNoise) and Mixing Denoise (MDeNoise), composed from the one integrator (docs/method.md)."""
from __future__ import annotations

from typing import Optional

import torch

from .integrator import INVERSION_RULES, NFECounter, StepHook, Velocity, integrate_flow, shifted_hook


def blending_noise(eps: torch.Tensor, sigmas: torch.Tensor, t_den_step: int, velocity_denoise: Velocity,
                   velocity_invert: Velocity, *, inversion: str = "lagged", counter: Optional[NFECounter] = None,
                   on_step: Optional[StepHook] = None, state_dtype: Optional[torch.dtype] = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """ε_b = BNoise(ε): Euler-denoise ε under SCat guidance γ_den for the steps σ_0 … σ_{t_den_step}
    (t_den_step + 1 model calls; the latent reaches σ_{t_den_step+1}), then invert back to σ_0 = 1 under γ_inv
    (t_den_step + 1 calls). At the defaults (20 steps, t_den step 10) that is 11 + 11 forward passes.

    ``velocity_denoise`` / ``velocity_invert`` are v(x, σ) with the phase's conditioning (γ_den = 5, γ_inv = 0 in
    the paper). Returns (ε_b at σ = 1, the blended latent at σ_{t_den_step+1}).
    """
    last_grid_step = len(sigmas) - 2  # σ_{t_den_step+1} must stay > 0 so both inversion rules are defined
    if not 0 <= t_den_step < last_grid_step:
        raise ValueError(f"t_den_step must lie in [0, {last_grid_step - 1}] for a {len(sigmas) - 1}-step grid, "
                         f"got {t_den_step}")
    if inversion not in INVERSION_RULES:
        raise ValueError(f"unknown inversion rule {inversion!r}; expected one of {tuple(INVERSION_RULES)}")
    down = sigmas[: t_den_step + 2]
    x_den = integrate_flow(eps, down, velocity_denoise, evaluate_at="source", counter=counter,
                           on_step=on_step, state_dtype=state_dtype)
    eps_b = integrate_flow(x_den, down.flip(0), velocity_invert, evaluate_at=INVERSION_RULES[inversion],
                           counter=counter, on_step=shifted_hook(on_step, t_den_step + 1), state_dtype=state_dtype)
    return eps_b, x_den


def mixing_denoise(eps_b: torch.Tensor, sigmas: torch.Tensor, velocity_mix: Velocity, *,
                   counter: Optional[NFECounter] = None, on_step: Optional[StepHook] = None,
                   state_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """MDeNoise: Euler-denoise ε_b over the whole grid σ_0 = 1 → 0 with the SInp = mix(z1, z2, α) condition under
    γ_gen (4 in the paper); len(sigmas) − 1 model calls. Returns the clean latent x_0."""
    return integrate_flow(eps_b, sigmas, velocity_mix, evaluate_at="source", counter=counter, on_step=on_step,
                          state_dtype=state_dtype)
