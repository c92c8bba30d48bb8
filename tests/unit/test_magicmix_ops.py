"""vmdiff_ops.magicmix against the paper's schedule (no ComfyUI involved): window, layout noises, ν blend, NFE."""
import pytest
import torch

from vmdiff_pack.vmdiff_ops import NFECounter, integrate_flow
from vmdiff_pack.vmdiff_ops.magicmix import (flow_noise_scaling, layout_noises, layout_trajectory, magicmix,
                                             mixing_window, nu_blend)

STEPS = 10
SIGMAS = torch.linspace(1.0, 0.0, STEPS + 1)


def velocity(x, sigma):
    """A smooth, state- and σ-dependent stand-in for a model's v(x, σ)."""
    return torch.tanh(x) * (1.0 + sigma) - 0.3 * x.roll(1, -1)


def other_velocity(x, sigma):
    return torch.sin(x) - sigma * x


def draws(seed=0, shape=(1, 4, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def layout_for(x0, eps, k_max=0.6, k_min=0.3, noise_scaling=flow_noise_scaling):
    i_max, i_min = mixing_window(STEPS, k_max, k_min)
    return layout_noises(x0, eps, SIGMAS[i_max: i_min + 1], noise_scaling), i_max, i_min


def test_mixing_window_is_k_counted_from_the_clean_end():
    assert mixing_window(10, 0.6, 0.3) == (4, 7)  # K_max = 6 → grid index 4; K_min = 3 → index 7
    assert mixing_window(50, 0.6, 0.3) == (20, 35)
    assert mixing_window(20, 0.7, 0.7) == (6, 6)  # 0.7·20 = 14.000000000000002: rounded, not floored
    assert mixing_window(20, 1.0, 0.0) == (0, 20)
    assert mixing_window(3, 0.5, 0.5) == (1, 1)
    for bad in ((0.3, 0.6), (1.2, 0.3), (0.6, -0.1)):
        with pytest.raises(ValueError, match="k_min"):
            mixing_window(10, *bad)
    with pytest.raises(ValueError, match="K_max = 0"):
        mixing_window(10, 0.04, 0.0)


def test_layout_noises_use_one_draw_and_the_given_noise_scaling():
    x0, eps = draws()
    layout, i_max, i_min = layout_for(x0, eps)
    assert len(layout) == i_min - i_max + 1 == 4
    for x_k, sigma in zip(layout, SIGMAS[i_max: i_min + 1]):
        assert torch.allclose(x_k, (1 - sigma) * x0 + sigma * eps, atol=1e-6)
    eps_space = layout_noises(x0, eps, [2.0, 0.5], lambda s, e, x: x + s * e)  # ComfyUI's EPS x_σ = x0 + σ·ε
    assert torch.equal(eps_space[0], x0 + 2.0 * eps) and torch.equal(eps_space[1], x0 + 0.5 * eps)


def test_nu_blend():
    a, b = draws()
    assert torch.equal(nu_blend(a, b, 1.0), a) and torch.equal(nu_blend(a, b, 0.0), b)
    assert torch.allclose(nu_blend(a, b, 0.25), 0.25 * a + 0.75 * b)
    with pytest.raises(ValueError, match="nu"):
        nu_blend(a, b, 1.5)


@pytest.mark.parametrize("k_min", [0.6, 0.3, 0.0])
def test_nu_one_is_img2img_from_k_max(k_min):
    x0, eps = draws(1)
    layout, i_max, _ = layout_for(x0, eps, 0.6, k_min)
    plain = integrate_flow(flow_noise_scaling(float(SIGMAS[i_max]), eps, x0), SIGMAS[i_max:], velocity)
    assert torch.allclose(magicmix(layout, SIGMAS, i_max, velocity, nu=1.0), plain, atol=1e-6)


def test_nu_zero_keeps_the_layout_path_through_k_min():
    x0, eps = draws(2)
    layout, i_max, i_min = layout_for(x0, eps)
    seen = {}
    out = magicmix(layout, SIGMAS, i_max, velocity, nu=0.0,
                   on_step=lambda i, x_in, *rest: seen.setdefault(i, x_in))
    assert sorted(seen) == list(range(STEPS - i_max))
    for j, x_k in enumerate(layout):  # every state from K_max to K_min is the layout noise itself
        assert torch.equal(seen[j], x_k)
    assert torch.allclose(out, integrate_flow(layout[-1], SIGMAS[i_min:], velocity), atol=1e-6)


def test_intermediate_nu_follows_the_paper_step_by_step():
    x0, eps = draws(3)
    nu = 0.35
    layout, i_max, i_min = layout_for(x0, eps)
    x = layout[0]
    for i in range(i_max, i_min):
        x_denoised = x + (SIGMAS[i + 1] - SIGMAS[i]) * velocity(x, float(SIGMAS[i]))  # x̂'_{k−1}
        x = nu * x_denoised + (1 - nu) * layout[i + 1 - i_max]                        # x̂_{k−1}
    for i in range(i_min, STEPS):
        x = x + (SIGMAS[i + 1] - SIGMAS[i]) * velocity(x, float(SIGMAS[i]))
    ours = magicmix(layout, SIGMAS, i_max, velocity, nu)
    assert torch.allclose(ours, x, atol=1e-5)
    assert not torch.allclose(ours, magicmix(layout, SIGMAS, i_max, velocity, 1.0), atol=1e-3)


def test_step_and_nfe_counts():
    x0, eps = draws(4)
    for k_max, k_min, expected in ((0.6, 0.3, 6), (1.0, 0.0, 10), (0.2, 0.2, 2)):
        layout, i_max, i_min = layout_for(x0, eps, k_max, k_min)
        counter, steps = NFECounter(), []
        magicmix(layout, SIGMAS, i_max, velocity, 0.5, counter=counter, on_step=lambda i, *r: steps.append(i),
                 step_offset=3)
        assert counter.calls == expected == STEPS - i_max
        assert steps == list(range(3, 3 + expected))


def test_text_text_layout_trajectory_is_a_generation_under_the_layout_condition():
    noise, _ = draws(5)
    i_max, i_min = mixing_window(STEPS, 0.6, 0.3)
    counter = NFECounter()
    layout = layout_trajectory(noise, SIGMAS, i_max, i_min, other_velocity, counter=counter)
    assert counter.calls == i_min and len(layout) == i_min - i_max + 1
    for j, x_k in enumerate(layout):
        assert torch.allclose(x_k, integrate_flow(noise, SIGMAS[: i_max + j + 1], other_velocity), atol=1e-6)
    assert torch.equal(layout_trajectory(noise, SIGMAS, 0, 0, other_velocity)[0], noise)
    # then MagicMix from it: i_min layout-prompt calls + T − i_max content calls
    magicmix(layout, SIGMAS, i_max, velocity, 0.5, counter=counter)
    assert counter.calls == i_min + STEPS - i_max == 13
