"""The flow-matching sigma grid VMDiff samples on (docs/method.md, "The σ grid")."""
from __future__ import annotations

import math

import torch


def flux_mu(width: int, height: int, base_shift: float = 0.5, max_shift: float = 1.15,
            base_seq_len: int = 256, max_seq_len: int = 4096) -> float:
    """The shift μ of FLUX's dynamic time shifting, linear in the packed sequence length (W/16)·(H/16).

    diffusers' ``calculate_shift``; μ = 0.63 at 512², the reference's setting (flux_inv_pipline.py:721-736).
    """
    seq_len = (width // 16) * (height // 16)
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return base_shift + slope * (seq_len - base_seq_len)


def time_shift(mu: float, sigma: torch.Tensor) -> torch.Tensor:
    """σ' = e^μ / (e^μ + 1/σ − 1): FLUX's exponential time shift of a uniform σ."""
    return math.exp(mu) / (math.exp(mu) + (1.0 / sigma - 1.0))


def flow_sigma_grid(steps: int, mu: float) -> torch.Tensor:
    """The (steps + 1) noise levels σ_0 = 1 > … > σ_{steps-1} > σ_steps = 0 of the rectified-flow schedule.

    σ_i = time_shift(μ, linspace(1, 1/steps, steps)_i), then 0 appended (flux_inv_pipline.py:720). The DiT's timestep is
    t_i = 1000·σ_i; t_den of the paper is t at step index ``t_den_step`` (652 at step 10 of 20, μ = 0.63).
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    uniform = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    sigmas = time_shift(mu, uniform)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.float32)


def t_den_sigma(sigmas: torch.Tensor, t_den_step: int) -> float:
    """σ at the paper's t_den: the noise level of the last guided-denoising evaluation of Blending Noise."""
    return float(sigmas[t_den_step])
