"""N-object fusion: the order-invariant N-way generalisation of the two-way mix rules (vmdiff_ops.tokens)."""
import itertools

import pytest
import torch

from vmdiff_pack.vmdiff_ops import lerp_tokens, mix_tokens_n, slerp_tokens, spherical_weighted_mean


def token_sets(n, tokens=7, width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Redux-like: norms far from 1 and different per token and per set
    return [torch.randn(1, tokens, width, generator=g) * (1 + 3 * torch.rand(1, tokens, 1, generator=g))
            for _ in range(n)]


@pytest.mark.parametrize("rule", ["slerp", "lerp"])
@pytest.mark.parametrize("n", [3, 4])
def test_permuting_the_sets_with_their_weights_does_not_change_the_mix(rule, n):
    sets = token_sets(n)
    weights = [0.1, 0.5, 0.15, 0.25][:n]
    reference = mix_tokens_n(sets, weights, rule)
    for perm in itertools.permutations(range(n)):
        mixed = mix_tokens_n([sets[i] for i in perm], [weights[i] for i in perm], rule)
        torch.testing.assert_close(mixed, reference, atol=1e-5, rtol=1e-5)
    # ...while a permutation of the weights alone does change it
    assert not torch.allclose(mix_tokens_n(sets, weights[::-1], rule), reference, atol=1e-3)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.85, 1.0])
def test_two_sets_equal_the_two_way_rules(alpha):
    z1, z2 = token_sets(2, seed=1)
    torch.testing.assert_close(mix_tokens_n([z1, z2], [1 - alpha, alpha], "slerp"), slerp_tokens(z1, z2, alpha),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mix_tokens_n([z1, z2], [1 - alpha, alpha], "lerp"), lerp_tokens(z1, z2, alpha),
                               atol=1e-6, rtol=1e-6)


def test_a_zero_weight_set_changes_nothing_and_weights_are_normalised():
    z1, z2, z3 = token_sets(3, seed=2)
    two = mix_tokens_n([z1, z2], [0.4, 0.6], "slerp")
    torch.testing.assert_close(mix_tokens_n([z1, z3, z2], [0.4, 0.0, 0.6], "slerp"), two, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mix_tokens_n([z1, z2], [2.0, 3.0], "slerp"), two, atol=1e-6, rtol=1e-6)


def test_slerp_mean_is_on_the_sphere_with_averaged_norms_and_equal_sets_are_fixed_points():
    sets = token_sets(3, seed=3)
    w = [0.2, 0.3, 0.5]
    mixed = mix_tokens_n(sets, w, "slerp")
    norms = sum(wk * z.norm(dim=-1) for wk, z in zip(w, sets))
    torch.testing.assert_close(mixed.norm(dim=-1), norms, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(mix_tokens_n([sets[0]] * 3, w, "slerp"), sets[0], atol=1e-5, rtol=1e-5)


def test_spherical_mean_is_the_karcher_mean():
    """At the mean q the weighted sum of log maps vanishes (first-order optimality of Σ w_k d(q, u_k)²)."""
    g = torch.Generator().manual_seed(4)
    u = torch.nn.functional.normalize(torch.randn(4, 5, 8, generator=g, dtype=torch.float64), dim=-1)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    q = spherical_weighted_mean(u, w)
    cos = (u * q).sum(-1, keepdim=True)
    tangent = u - cos * q
    logs = torch.arccos(cos.clamp(-1, 1)) * tangent / tangent.norm(dim=-1, keepdim=True)
    assert (w.view(-1, 1, 1) * logs).sum(0).norm(dim=-1).max() < 1e-6
    assert torch.allclose(q.norm(dim=-1), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("weights, message", [
    ([0.5, 0.5], "2 weights for 3 token sets"),
    ([0.5, -0.1, 0.6], ">= 0"),
    ([0.0, 0.0, 0.0], "at least one weight"),
    ([0.3, float("nan"), 0.3], "finite"),
])
def test_bad_weights_are_refused_with_the_reason(weights, message):
    with pytest.raises(ValueError, match=message):
        mix_tokens_n(token_sets(3), weights)


def test_bad_sets_and_rules_are_refused():
    z1, z2 = token_sets(2)
    with pytest.raises(ValueError, match="at least two"):
        mix_tokens_n([z1], [1.0])
    with pytest.raises(ValueError, match="shape"):
        mix_tokens_n([z1, z2[:, :3]], [0.5, 0.5])
    with pytest.raises(ValueError, match="N-way mix rule"):
        mix_tokens_n([z1, z2], [0.5, 0.5], "official")
