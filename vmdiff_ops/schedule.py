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


# ---------------------------------------------------------------------------------------------------------------------
# FLUX.2: scheduled by core's Flux2Scheduler, not by FLUX.1's μ shift

#: The two linear fits of FLUX.2's empirical μ (image sequence length → μ at 10 and at 200 steps), as in ComfyUI's
#: comfy_extras/nodes_flux.py ``compute_empirical_mu`` (from BFL's flux2 reference code).
FLUX2_MU_FIT_10_STEPS = (8.73809524e-05, 1.89833333)
FLUX2_MU_FIT_200_STEPS = (0.00016927, 0.45666666)
FLUX2_MU_LONG_SEQUENCE = 4300  # above this many image tokens μ follows the 200-step fit alone


def flux2_empirical_mu(image_seq_len: int, steps: int) -> float:
    """FLUX.2's shift μ, linear in the number of steps between two fits linear in the image sequence length.

    μ = a·steps + b through (10, m_10) and (200, m_200), m_k = a_k·L + b_k, L = image tokens (W·H/256); for L > 4300
    μ = m_200. Source: ComfyUI 0.8.0 comfy_extras/nodes_flux.py ``compute_empirical_mu`` (same constants, same order
    of operations, so the same float)."""
    a1, b1 = FLUX2_MU_FIT_10_STEPS
    a2, b2 = FLUX2_MU_FIT_200_STEPS
    if image_seq_len > FLUX2_MU_LONG_SEQUENCE:
        return float(a2 * image_seq_len + b2)
    m_200 = a2 * image_seq_len + b2
    m_10 = a1 * image_seq_len + b1
    a = (m_200 - m_10) / 190.0
    b = m_200 - 200.0 * a
    return float(a * steps + b)


def generalized_time_snr_shift(t: torch.Tensor, mu: float, sigma: float = 1.0) -> torch.Tensor:
    """σ' = e^μ / (e^μ + (1/t − 1)^σ): the time shift of FLUX.2's schedule (σ = 1: FLUX.1's ``time_shift``).
    t = 0 maps to 0 (1/0 = inf). Source: ComfyUI 0.8.0 comfy_extras/nodes_flux.py ``generalized_time_snr_shift``."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


def flux2_sigma_grid(steps: int, width: int, height: int) -> torch.Tensor:
    """The (steps + 1) noise levels 1 = σ_0 > … > σ_steps = 0 of FLUX.2: linspace(1, 0, steps + 1) shifted by
    ``generalized_time_snr_shift`` with μ = ``flux2_empirical_mu(round(W·H/256), steps)``. float32, equal to the
    SIGMAS of ComfyUI's ``Flux2Scheduler`` node (comfy_extras/nodes_flux.py ``get_schedule``) for the same steps,
    width and height (pixels). Raises ValueError if steps < 1 or a size is not positive."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}×{height}")
    mu = flux2_empirical_mu(round(width * height / (16 * 16)), steps)
    return generalized_time_snr_shift(torch.linspace(1, 0, steps + 1, dtype=torch.float32), mu, 1.0)


#: The model families whose σ grid the stages know (see ``family_sigma_grid``).
SIGMA_GRID_FAMILIES = ("flux1", "flux2")


def family_sigma_grid(family: str, steps: int, width: int, height: int) -> torch.Tensor:
    """The σ grid a model family is sampled on, for an image of ``width`` × ``height`` pixels:

    - "flux1" (FLUX.1 [dev] / Krea / Kontext): ``flow_sigma_grid(steps, flux_mu(width, height))``, the reference's
      dynamic μ shift (the grid the FLUX.1 + Redux stages always used);
    - "flux2" (FLUX.2 [dev] / [klein]): ``flux2_sigma_grid`` (core ``Flux2Scheduler``).

    Raises ValueError for another family."""
    if family == "flux1":
        return flow_sigma_grid(steps, flux_mu(width, height))
    if family == "flux2":
        return flux2_sigma_grid(steps, width, height)
    raise ValueError(f"family must be one of {SIGMA_GRID_FAMILIES}, got {family!r}")


#: σ at the paper's t_den (t = 652, step 10 of FLUX.1's 20-step grid at 512², μ = 0.63; docs/method.md, the σ grid).
PAPER_SIGMA_DEN = 0.6525


def t_den_step_for_sigma(sigmas: torch.Tensor, sigma_den: float = PAPER_SIGMA_DEN) -> int:
    """The step index i ≤ steps − 2 whose σ_i is nearest ``sigma_den``: t_den as a noise level rather than a place
    along the grid. On FLUX.1's grid at 512² it is the paper's step 10; FLUX.2's grid stays noisier for longer
    (σ_10 = 0.87 of 20 steps at 512²), so the same noise level is a later step (16). Raises ValueError for a grid
    of fewer than 2 steps."""
    steps = len(sigmas) - 1
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    return min(range(steps - 1), key=lambda i: abs(float(sigmas[i]) - sigma_den))
