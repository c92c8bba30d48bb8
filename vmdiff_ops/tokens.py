"""Visual conditions built from the Redux token sets z1, z2 (docs/method.md: SCat, the mix rules)."""
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
    """SInp as the reference code computes it (run_single.py:35-61): per token, on the *unnormalised* tokens,
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


#: Rules of the N-way mix. "official" has no N-way form: on real Redux tokens it is a lerp (see above), so use "lerp".
MIX_RULES_N = ("slerp", "lerp")


def normalized_weights(weights, count: int) -> torch.Tensor:
    """The N-way mix weights as float64 summing to one; refuses what cannot be a mixture, with the reason."""
    w = torch.as_tensor([float(x) for x in weights], dtype=torch.float64)
    if w.numel() != count:
        raise ValueError(f"got {w.numel()} weights for {count} token sets; give one weight per set")
    if not torch.isfinite(w).all():
        raise ValueError(f"weights must be finite numbers, got {w.tolist()}")
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0 (a mixture, not an extrapolation), got {w.tolist()}")
    if w.sum() <= 0:
        raise ValueError(f"at least one weight must be > 0, got {w.tolist()}")
    return w / w.sum()


def spherical_weighted_mean(units: torch.Tensor, weights: torch.Tensor, iterations: int = 50,
                            tol: float = 1e-7) -> torch.Tensor:
    """Weighted Fréchet (Karcher) mean of unit vectors on the sphere, per token (Buss & Fillmore 2001).

    units: (K, ..., C) unit vectors, weights: (K,) summing to one. Starts at the normalised weighted mean and takes
    Riemannian gradient steps q ← exp_q(Σ_k w_k log_q(u_k)) until the step is below ``tol``. Order-invariant by
    construction (a weighted sum over k); for K = 2 it is the point at fraction w_2 along the geodesic, i.e. slerp.
    Directions that cancel out (weighted mean ≈ 0) have no spherical mean; they fall back to the first direction.
    """
    w = weights.to(units.dtype).view(-1, *([1] * (units.dim() - 1)))
    q = (w * units).sum(0)
    norm = q.norm(dim=-1, keepdim=True)
    q = torch.where(norm > 1e-8, q / norm.clamp_min(1e-12), units[0])
    for _ in range(iterations):
        cos = (units * q).sum(-1, keepdim=True).clamp(-1.0, 1.0)
        theta = torch.arccos(cos)
        tangent = units - cos * q
        t_norm = tangent.norm(dim=-1, keepdim=True)
        # log_q(u) = θ · (u − cos θ q)/|u − cos θ q|; 0 when u = q (θ → 0)
        logs = torch.where(t_norm > 1e-12, theta * tangent / t_norm.clamp_min(1e-12), torch.zeros_like(tangent))
        step = (w * logs).sum(0)
        s_norm = step.norm(dim=-1, keepdim=True)
        q = torch.cos(s_norm) * q + torch.where(s_norm > 1e-12, torch.sin(s_norm) * step / s_norm.clamp_min(1e-12),
                                                torch.zeros_like(step))
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if float(s_norm.max()) < tol:
            break
    return q


def mix_tokens_n(token_sets, weights, rule: str = "slerp") -> torch.Tensor:
    """SInp for N ≥ 2 objects: an order-invariant mix of token sets z_1…z_N (same shape (B, T, C)) with weights
    w_k ≥ 0, normalised to sum to one.

    * ``lerp``: Σ_k w_k z_k per token.
    * ``slerp``: per token, the spherical weighted mean of the directions z_k/|z_k| (``spherical_weighted_mean``)
      times the weighted mean of the norms Σ_k w_k |z_k| — the paper's slerp (directions on the sphere, norms
      interpolated linearly) generalised. For N = 2 with weights (1 − α, α) both equal the two-way rules
      ``lerp_tokens``/``slerp_tokens`` at α; a set with weight 0 does not change the result.
    """
    sets = list(token_sets)
    if len(sets) < 2:
        raise ValueError(f"need at least two token sets to mix, got {len(sets)}")
    for k, z in enumerate(sets[1:], start=2):
        if z.shape != sets[0].shape:
            raise ValueError(f"token set {k} has shape {tuple(z.shape)}, set 1 has {tuple(sets[0].shape)}; "
                             f"all sets must come from the same encoders")
    if rule not in MIX_RULES_N:
        raise ValueError(f"unknown N-way mix rule {rule!r}; expected one of {MIX_RULES_N}")
    w = normalized_weights(weights, len(sets))
    z = torch.stack([s.double() for s in sets])  # float64: the iterative mean is then order-invariant to ~1e-12
    wv = w.view(-1, *([1] * (z.dim() - 1)))
    if rule == "lerp":
        return (wv * z).sum(0).to(sets[0].dtype)
    norms = z.norm(dim=-1, keepdim=True)
    direction = spherical_weighted_mean(z / norms.clamp_min(1e-12), w)
    return (direction * (wv * norms).sum(0)).to(sets[0].dtype)
