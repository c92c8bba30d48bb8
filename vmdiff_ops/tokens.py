"""Visual conditions built from the Redux token sets z1, z2 (spec §3 SCat, §4 mix rules)."""
from __future__ import annotations

import torch

#: |cos| (official: raw dot product) above which the two endpoints count as parallel and are lerped.
PARALLEL_THRESHOLD = 0.9995


def _check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.shape != z2.shape:
        raise ValueError(f"token sets z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} must have the same shape")


def scale_concat(z1: torch.Tensor, z2: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """SCat(z1, z2; β1, β2) = concat(β1·z1, β2·z2) along the token axis — the Blending-Noise condition.

    z1, z2: (B, N, C) Redux tokens; returns (B, 2N, C). β scales the tokens before FLUX's context embedder.
    """
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not beta > 0:
            raise ValueError(f"{name} must be > 0 (it scales a token set), got {beta}")
    if z1.shape[0] != z2.shape[0] or z1.shape[2] != z2.shape[2]:
        raise ValueError(f"token sets z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} differ in batch or width")
    return torch.cat([z1 * beta1, z2 * beta2], dim=1)


def lerp_tokens(z1: torch.Tensor, z2: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 − α)·z1 + α·z2 per token; α is the weight of image 2."""
    _check_pair(z1, z2)
    return torch.lerp(z1.float(), z2.float(), alpha).to(z1.dtype)


def _slerp_coefficients(cos: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    theta = torch.arccos(cos)
    sin_theta = torch.sin(theta)
    return torch.sin((1.0 - alpha) * theta) / sin_theta, torch.sin(alpha * theta) / sin_theta


def official_mix_tokens(z1: torch.Tensor, z2: torch.Tensor, alpha: float) -> tuple[torch.Tensor, float]:
    """SInp as the reference code computes it (spec §4): per token, on the *unnormalised* tokens,
    d = <v0, v1>; lerp when |d| > 0.9995 or d is NaN, else sin((1−α)θ)/sin θ·v0 + sin(αθ)/sin θ·v1 with θ = arccos d.

    Real Redux tokens have norms ≫ 1, so almost every token takes the lerp branch. Returns the mix and the
    fraction of tokens that took the slerp branch (the spec asks to log it).
    """
    _check_pair(z1, z2)
    v0, v1 = z1.float(), z2.float()
    dot = (v0 * v1).sum(-1, keepdim=True)
    parallel = (dot.abs() > PARALLEL_THRESHOLD) | torch.isnan(dot)
    c0, c1 = _slerp_coefficients(dot.clamp(-PARALLEL_THRESHOLD, PARALLEL_THRESHOLD), alpha)
    mixed = torch.where(parallel, torch.lerp(v0, v1, alpha), c0 * v0 + c1 * v1)
    return mixed.to(z1.dtype), float((~parallel).float().mean())


def slerp_tokens(z1: torch.Tensor, z2: torch.Tensor, alpha: float) -> torch.Tensor:
    """SInp = slerp(z1, z2, α) as the paper describes it: spherical interpolation of each token's *direction*,
    its norm interpolated linearly, (1 − α)·|v0| + α·|v1|. Nearly parallel directions fall back to lerp."""
    _check_pair(z1, z2)
    v0, v1 = z1.float(), z2.float()
    n0, n1 = v0.norm(dim=-1, keepdim=True), v1.norm(dim=-1, keepdim=True)
    u0, u1 = v0 / n0.clamp_min(1e-12), v1 / n1.clamp_min(1e-12)
    cos = (u0 * u1).sum(-1, keepdim=True)
    parallel = cos.abs() > PARALLEL_THRESHOLD
    c0, c1 = _slerp_coefficients(cos.clamp(-PARALLEL_THRESHOLD, PARALLEL_THRESHOLD), alpha)
    direction = torch.where(parallel, torch.lerp(u0, u1, alpha), c0 * u0 + c1 * u1)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (direction * torch.lerp(n0, n1, alpha)).to(z1.dtype)


MIX_RULES = ("official", "slerp", "lerp")


def mix_tokens(z1: torch.Tensor, z2: torch.Tensor, alpha: float, rule: str = "official") -> torch.Tensor:
    """SInp(z1, z2; α): the Mixing-Denoise condition, by one of the rules in ``MIX_RULES``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (the weight of image 2), got {alpha}")
    if rule == "official":
        return official_mix_tokens(z1, z2, alpha)[0]
    if rule == "slerp":
        return slerp_tokens(z1, z2, alpha)
    if rule == "lerp":
        return lerp_tokens(z1, z2, alpha)
    raise ValueError(f"unknown mix rule {rule!r}; expected one of {MIX_RULES}")
