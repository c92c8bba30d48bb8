"""VMDiff's equations as pure torch functions (no ComfyUI import), one named function per concept of the paper."""
from .schedule import (flux_mu, time_shift, flow_sigma_grid, t_den_sigma, flux2_empirical_mu,
                       generalized_time_snr_shift, flux2_sigma_grid, family_sigma_grid, SIGMA_GRID_FAMILIES,
                       PAPER_SIGMA_DEN, t_den_step_for_sigma)
from .tokens import (scale_concat, mix_tokens, lerp_tokens, slerp_tokens, official_mix_tokens, MIX_RULES,
                     mix_tokens_n, spherical_weighted_mean, normalized_weights, MIX_RULES_N)
from .integrator import NFECounter, integrate_flow, INVERSION_RULES
from .blending import blending_noise, mixing_denoise
from .search import (PRESETS, Evaluation, SearchOptions, beta_grid, efficient_adaptive_adjustment,
                     golden_section_maximize, golden_section_maximize_on_grid, round_seed, search_value,
                     speculative_points, stronger_side)

__all__ = [
    "flux_mu", "time_shift", "flow_sigma_grid", "t_den_sigma",
    "flux2_empirical_mu", "generalized_time_snr_shift", "flux2_sigma_grid", "family_sigma_grid", "SIGMA_GRID_FAMILIES",
    "PAPER_SIGMA_DEN", "t_den_step_for_sigma",
    "scale_concat", "mix_tokens", "lerp_tokens", "slerp_tokens", "official_mix_tokens", "MIX_RULES",
    "mix_tokens_n", "spherical_weighted_mean", "normalized_weights", "MIX_RULES_N",
    "NFECounter", "integrate_flow", "INVERSION_RULES",
    "blending_noise", "mixing_denoise",
    "PRESETS", "Evaluation", "SearchOptions", "beta_grid", "efficient_adaptive_adjustment",
    "golden_section_maximize", "golden_section_maximize_on_grid", "round_seed", "search_value", "speculative_points",
    "stronger_side",
]
