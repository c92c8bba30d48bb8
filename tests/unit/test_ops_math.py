"""vmdiff_ops against the definitions in the paper / spec (no ComfyUI involved)."""
import math

import pytest
import torch

from vmdiff_pack.vmdiff_ops import (NFECounter, blending_noise, flow_sigma_grid, flux_mu, integrate_flow, lerp_tokens,
                        mix_tokens, mixing_denoise, official_mix_tokens, scale_concat, slerp_tokens, t_den_sigma)

SPEC_SIGMAS = [1.0, .97273, .94413, .91409, .88250, .84923, .81416, .77713, .73797, .69650, .65249, .60571, .55590,
               .50274, .44589, .38494, .31945, .24888, .17261, .08993, 0.0]
SPEC_T = [1000, 972, 944, 916, 884, 848, 816, 776, 736, 696, 652, 604, 556, 504, 446, 384, 320, 249, 173, 90]


def test_sigma_grid_reproduces_spec_table():
    mu = flux_mu(512, 512)
    assert mu == pytest.approx(0.63, abs=1e-12)
    sigmas = flow_sigma_grid(20, mu)
    assert sigmas.shape == (21,)
    assert torch.allclose(sigmas, torch.tensor(SPEC_SIGMAS), atol=1e-5)
    # the DiT's timestep as the reference feeds it (bf16(1000σ), /1000 in bf16, ×1000 in bf16): t_den = 652
    bf16 = torch.bfloat16
    t_ref = ((1000 * sigmas[:-1]).to(bf16) / 1000).to(bf16) * 1000
    assert t_ref.to(bf16).float().tolist() == SPEC_T
    assert t_den_sigma(sigmas, 10) == pytest.approx(0.65249, abs=1e-5)


def test_mu_grows_with_image_size():
    assert flux_mu(1024, 1024) == pytest.approx(1.15)
    assert flux_mu(256, 256) == pytest.approx(0.5)
    assert flow_sigma_grid(20, flux_mu(1024, 1024))[10] > flow_sigma_grid(20, flux_mu(512, 512))[10]


def test_scale_concat_shapes_and_scaling():
    z1, z2 = torch.randn(1, 7, 5), torch.randn(1, 7, 5)
    ctx = scale_concat(z1, z2, 0.5, 2.0)
    assert ctx.shape == (1, 14, 5)
    assert torch.equal(ctx[:, :7], z1 * 0.5) and torch.equal(ctx[:, 7:], z2 * 2.0)
    assert torch.equal(scale_concat(z1, z2, 1.0, 1.0), torch.cat([z1, z2], 1))
    with pytest.raises(ValueError, match="beta2"):
        scale_concat(z1, z2, 1.0, 0.0)
    with pytest.raises(ValueError, match="beta1"):
        scale_concat(z1, z2, -1.0, 1.0)


@pytest.mark.parametrize("rule", ["official", "slerp", "lerp"])
def test_mix_endpoints_are_the_inputs(rule):
    torch.manual_seed(0)
    z1, z2 = torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    assert torch.allclose(mix_tokens(z1, z2, 0.0, rule), z1, atol=1e-5)
    assert torch.allclose(mix_tokens(z1, z2, 1.0, rule), z2, atol=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        mix_tokens(z1, z2, 1.5, rule)


def test_slerp_keeps_directions_on_the_sphere_and_interpolates_norms():
    torch.manual_seed(1)
    z1, z2 = torch.randn(1, 32, 64) * 3, torch.randn(1, 32, 64) * 7
    for alpha in (0.25, 0.5, 0.8):
        out = slerp_tokens(z1, z2, alpha)
        expected_norm = (1 - alpha) * z1.norm(dim=-1) + alpha * z2.norm(dim=-1)
        assert torch.allclose(out.norm(dim=-1), expected_norm, rtol=1e-5)
        # the direction lies on the great circle: angle to z1 is alpha times the full angle
        u0, u1, u = (t / t.norm(dim=-1, keepdim=True) for t in (z1, z2, out))
        theta = torch.arccos((u0 * u1).sum(-1))
        assert torch.allclose(torch.arccos((u0 * u).sum(-1).clamp(-1, 1)), alpha * theta, atol=1e-4)
    # unit-norm inputs stay unit norm (the classic slerp property)
    n1, n2 = z1 / z1.norm(dim=-1, keepdim=True), z2 / z2.norm(dim=-1, keepdim=True)
    assert torch.allclose(slerp_tokens(n1, n2, 0.3).norm(dim=-1), torch.ones(1, 32), atol=1e-5)


def test_slerp_of_parallel_tokens_is_lerp():
    z1 = torch.randn(1, 4, 8)
    assert torch.allclose(slerp_tokens(z1, 2 * z1, 0.5), 1.5 * z1, atol=1e-5)


def test_official_rule_is_lerp_for_large_norm_tokens_and_slerp_for_small_orthogonal_ones():
    torch.manual_seed(2)
    big1, big2 = torch.randn(1, 50, 4096) * 4, torch.randn(1, 50, 4096) * 4  # Redux-like norms: raw dot ≫ 1
    mixed, slerp_fraction = official_mix_tokens(big1, big2, 0.3)
    assert slerp_fraction == 0.0
    assert torch.allclose(mixed, lerp_tokens(big1, big2, 0.3), atol=1e-5)
    e1, e2 = torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)
    e1[..., 0], e2[..., 1] = 1.0, 1.0  # orthogonal unit tokens: slerp branch, amplified by √2 at α = 0.5
    mixed, slerp_fraction = official_mix_tokens(e1, e2, 0.5)
    assert slerp_fraction == 1.0
    assert mixed.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert mixed[0, 0, 0].item() == pytest.approx(math.sqrt(0.5), abs=1e-5)


def _rotating_field(x, sigma):
    """A smooth, x- and σ-dependent velocity field with no closed-form shortcut for Euler."""
    return torch.stack([-x[:, 1], x[:, 0]], 1) * (1.0 + sigma) + 0.3 * math.sin(3 * sigma) * x


@pytest.mark.parametrize("rule", ["lagged", "exact-euler"])
def test_inversion_round_trip_converges_as_steps_grow(rule):
    x_T = torch.tensor([[1.0, -0.5], [0.3, 0.8]])
    errors = []
    for steps in (10, 40, 160):
        sigmas = flow_sigma_grid(steps, 0.63)
        k = steps // 2
        eps_b, x_den = blending_noise(x_T, sigmas, k, _rotating_field, _rotating_field, inversion=rule)
        assert not torch.allclose(x_den, x_T)  # it really moved
        errors.append((eps_b - x_T).norm().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02 and errors[2] < errors[0] / 4  # first-order: error ~ 1/steps


def test_integrator_is_exact_on_a_constant_field_both_directions():
    x = torch.randn(3, 4)
    v = torch.randn(3, 4)
    sigmas = flow_sigma_grid(12, 0.63)
    x0 = integrate_flow(x, sigmas, lambda x_, s: v)
    assert torch.allclose(x0, x - v, atol=1e-6)  # σ from 1 to 0: x_0 = x_1 − v
    assert torch.allclose(integrate_flow(x0, sigmas.flip(0), lambda x_, s: v, evaluate_at="destination"), x, atol=1e-6)


def test_nfe_counts_at_the_defaults():
    sigmas = flow_sigma_grid(20, 0.63)
    counter = NFECounter()
    seen_sigmas = []

    def field(x, sigma):
        seen_sigmas.append(round(sigma, 5))
        return torch.zeros_like(x)

    blending_noise(torch.zeros(1, 4), sigmas, 10, field, field, counter=counter)
    assert counter.calls == 22 and counter.samples == 22
    # denoise evaluates σ_0 … σ_10; lagged inversion labels the steps with the destinations σ_10 … σ_0
    expected = [round(float(s), 5) for s in sigmas[:11]]
    assert seen_sigmas == expected + expected[::-1]
    counter = NFECounter()
    mixing_denoise(torch.zeros(2, 4), sigmas, field, counter=counter)
    assert counter.calls == 20 and counter.samples == 40  # a batch of 2 candidates counts twice


def test_exact_euler_inversion_evaluates_at_the_source():
    sigmas = flow_sigma_grid(20, 0.63)
    seen = []
    blending_noise(torch.zeros(1, 2), sigmas, 10, lambda x, s: torch.zeros_like(x),
                   lambda x, s: seen.append(round(s, 5)) or torch.zeros_like(x), inversion="exact-euler")
    assert seen == [round(float(s), 5) for s in sigmas[1:12].flip(0)]


def test_t_den_step_outside_the_grid_is_refused():
    sigmas = flow_sigma_grid(20, 0.63)
    zero = lambda x, s: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="t_den_step"):
        blending_noise(torch.zeros(1, 2), sigmas, 19, zero, zero)
    with pytest.raises(ValueError, match="inversion"):
        blending_noise(torch.zeros(1, 2), sigmas, 5, zero, zero, inversion="heun")


def test_state_dtype_rounds_like_the_reference():
    x = torch.randn(1, 8)
    out = integrate_flow(x, [1.0, 0.5], lambda x_, s: torch.full_like(x_, 0.001), state_dtype=torch.bfloat16)
    assert torch.equal(out, out.to(torch.bfloat16).float())
