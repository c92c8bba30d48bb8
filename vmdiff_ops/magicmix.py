"""MagicMix (Liew et al., "MagicMix: Semantic Mixing with Diffusion Models"), composed from the one integrator.

The paper counts timesteps k = T … 0 from noise to image. On a σ grid σ_0 > σ_1 > … > σ_T = 0 of T = ``steps``
Euler steps, grid index i is the paper's k = T − i. Layout generation runs from K_max to K_min: the state is
denoised one step under the *content* condition (x̂'_{k−1}) and pulled back towards the layout noise x_{k−1}
(x̂_{k−1} = ν·x̂'_{k−1} + (1 − ν)·x_{k−1}); content generation then denoises plainly from K_min to 0.

``velocity`` callables are v(x, σ) as in :mod:`.integrator`; with v = (x − x̂0)/σ each Euler step is
k-diffusion's Euler step for ANY ComfyUI model (ε-prediction in ComfyUI's x_σ = x0 + σ·ε space included).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from .integrator import NFECounter, StepHook, Velocity, integrate_flow, shifted_hook

#: noise_scaling(σ, ε, x0) -> x_σ, the model family's q(x_σ | x0) for one noise draw ε
NoiseScaling = Callable[[float, torch.Tensor, torch.Tensor], torch.Tensor]


def flow_noise_scaling(sigma: float, eps: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 − σ)·x0 + σ·ε: the rectified-flow (Flux, ComfyUI's CONST) noising; the default."""
    return (1.0 - sigma) * x0 + sigma * eps


def mixing_window(steps: int, k_max: float, k_min: float) -> tuple[int, int]:
    """The grid indices (i_max, i_min) of K_max = round(k_max·T) and K_min = round(k_min·T) (T = ``steps``).

    i = T − K. Generation starts at σ_{i_max} from x̂_{K_max} = x_{K_max}; the layout (mixing) steps are the
    K_max − K_min Euler steps i_max → i_max + 1 … i_min − 1 → i_min, whose results x̂ at the indices
    i_max + 1 … i_min are ν-blended; the T − i_min steps below K_min are plain denoising. The paper's defaults
    are k_max = 0.6, k_min = 0.3. k_min = k_max means no mixing step: img2img from K_max.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0.0 <= k_min <= k_max <= 1.0:
        raise ValueError(f"need 0 ≤ k_min ≤ k_max ≤ 1 (fractions of T), got k_min={k_min}, k_max={k_max}")
    big_k_max, big_k_min = round(k_max * steps), round(k_min * steps)
    if big_k_max < 1:
        raise ValueError(f"k_max = {k_max} of {steps} steps is K_max = 0: nothing would be denoised; "
                         f"raise k_max or steps")
    return steps - big_k_max, steps - big_k_min


def layout_noises(x0: torch.Tensor, eps: torch.Tensor, sigmas: Sequence[float] | torch.Tensor,
                  noise_scaling: NoiseScaling = flow_noise_scaling) -> list[torch.Tensor]:
    """The layout noises x_k ~ q(x_k | x0) at each σ of ``sigmas``, all from ONE noise draw ε (as the paper's
    image–text mixing, so the layout path is a consistent noising of the one layout latent x0).

    ``noise_scaling`` is the model family's own x_σ formula (ComfyUI: ``model_sampling.noise_scaling``;
    ε-prediction x0 + σ·ε, flow (1 − σ)·x0 + σ·ε)."""
    return [noise_scaling(float(s), eps, x0) for s in sigmas]


def layout_trajectory(x_start: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, i_max: int, i_min: int,
                      velocity_layout: Velocity, *, counter: Optional[NFECounter] = None,
                      on_step: Optional[StepHook] = None) -> list[torch.Tensor]:
    """Text–text mixing: the layout noises are the states of a generation under the *layout* prompt.

    Euler-denoises ``x_start`` (pure noise at σ_0 in model space) for the i_min steps σ_0 → σ_{i_min} and returns
    the states [x_{i_max}, …, x_{i_min}] (i_min model calls)."""
    states = [x_start] if i_max == 0 else []

    def record(i, x_in, sigma, v, x_out):
        if i + 1 >= i_max:
            states.append(x_out)
        if on_step is not None:
            on_step(i, x_in, sigma, v, x_out)

    integrate_flow(x_start, list(sigmas)[: i_min + 1], velocity_layout, counter=counter, on_step=record)
    return states


def nu_blend(x_denoised: torch.Tensor, x_layout: torch.Tensor, nu: float) -> torch.Tensor:
    """x̂_{k−1} = ν·x̂'_{k−1} + (1 − ν)·x_{k−1}: ν = 1 keeps the denoised state, ν = 0 the layout noise."""
    if not 0.0 <= nu <= 1.0:
        raise ValueError(f"nu must lie in [0, 1], got {nu}")
    return nu * x_denoised + (1.0 - nu) * x_layout


def magicmix(layout: Sequence[torch.Tensor], sigmas: Sequence[float] | torch.Tensor, i_max: int,
             velocity_content: Velocity, nu: float, *, counter: Optional[NFECounter] = None,
             on_step: Optional[StepHook] = None, step_offset: int = 0) -> torch.Tensor:
    """MagicMix generation from the layout noises ``layout`` = [x_{K_max}, …, x_{K_min}] (grid indices
    i_max … i_min) to the clean latent at σ_T = 0, all under the content condition.

    x̂_{K_max} = x_{K_max}; then for each layout step one Euler step (x̂'_{k−1}) followed by the ν blend with
    x_{k−1}; then plain Euler below K_min. len(sigmas) − 1 − i_max model calls in all. ``on_step`` sees step
    indices from ``step_offset`` (its x_out is x̂' before the blend; the x_in of step i_min − i_max is x̂_{K_min}).
    """
    levels = [float(s) for s in sigmas]
    i_min = i_max + len(layout) - 1
    if not 0 <= i_max <= i_min < len(levels):
        raise ValueError(f"layout covers grid indices {i_max}…{i_min}, outside the {len(levels) - 1}-step grid")

    x = layout[0]
    for i in range(i_max, i_min):  # layout generation: one step at a time, each followed by the ν blend
        x = integrate_flow(x, levels[i: i + 2], velocity_content, counter=counter,
                           on_step=shifted_hook(on_step, step_offset + i - i_max))
        x = nu_blend(x, layout[i + 1 - i_max], nu)
    return integrate_flow(x, levels[i_min:], velocity_content, counter=counter,  # content generation
                          on_step=shifted_hook(on_step, step_offset + i_min - i_max))
