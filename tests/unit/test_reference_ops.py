"""vmdiff_ops.reference: the SCat / SInp analogues for reference latents (pure torch)."""
import math

import pytest
import torch

from vmdiff_pack.vmdiff_ops.reference import (drop_unseen_keys, reference_key_bias, reference_token_counts,
                                              scat_reference_bias, sinp_reference_bias, sinp_reference_bias_n)


def test_sinp_bias_fades_one_reference_and_never_boosts():
    assert sinp_reference_bias(0.5).tolist() == [0.0, 0.0]  # plain two-reference sampling
    assert sinp_reference_bias(0.0).tolist() == [0.0, -math.inf]  # reference 1 alone
    assert sinp_reference_bias(1.0).tolist() == [-math.inf, 0.0]  # reference 2 alone (at its own position)
    b = sinp_reference_bias(0.25)
    assert b[0] == 0 and b[1] == pytest.approx(math.log(0.5))
    b = sinp_reference_bias(0.9)
    assert b[0] == pytest.approx(math.log(0.2)) and b[1] == 0
    for a in torch.linspace(0, 1, 21).tolist():
        assert (sinp_reference_bias(a) <= 0).all()
    with pytest.raises(ValueError, match="alpha"):
        sinp_reference_bias(1.5)


def test_n_way_rule_generalises_sinp():
    for a in (0.0, 0.1, 0.5, 0.77, 1.0):
        assert torch.equal(sinp_reference_bias_n([1 - a, a]), sinp_reference_bias(a))
    assert sinp_reference_bias_n([1, 1, 1]).tolist() == [0.0, 0.0, 0.0]
    assert sinp_reference_bias_n([2, 2, 0]).tolist()[2] == -math.inf
    assert sinp_reference_bias_n([3, 1]).tolist() == pytest.approx([0.0, math.log(0.5)])
    for bad in ([1], [1, -1], [0, 0], [1, math.nan]):
        with pytest.raises(ValueError):
            sinp_reference_bias_n(bad)


def test_scat_bias_is_log_beta():
    assert scat_reference_bias(1.0, 1.0).tolist() == [0.0, 0.0]
    assert scat_reference_bias(2.0, 0.5).tolist() == pytest.approx([math.log(2), math.log(0.5)])
    for bad in ((0.0, 1.0), (1.0, -1.0), (math.inf, 1.0)):
        with pytest.raises(ValueError, match="beta"):
            scat_reference_bias(*bad)


def test_key_bias_row_puts_each_bias_on_its_reference_keys():
    assert reference_token_counts([(1, 16, 5, 7), (1, 16, 6, 4)], 2) == [12, 6]  # ⌈h/2⌉·⌈w/2⌉
    assert reference_token_counts([(1, 128, 5, 7)], 1) == [35]
    row = reference_key_bias(30, [12, 6], torch.tensor([0.5, -1.0]))
    assert row.shape == (1, 30)
    assert row[0, :12].eq(0).all() and row[0, 12:24].eq(0.5).all() and row[0, 24:].eq(-1.0).all()
    rows = reference_key_bias(30, [12, 6], torch.tensor([[0.0, 0.0], [0.0, -math.inf]]))
    assert rows.shape == (2, 30) and rows[0].eq(0).all() and torch.isinf(rows[1, 24:]).all()
    with pytest.raises(ValueError, match="do not fit"):
        reference_key_bias(18, [12, 6], torch.zeros(2))
    with pytest.raises(ValueError, match="biases"):
        reference_key_bias(30, [12, 6], torch.zeros(3))


def test_dropping_unseen_keys_equals_the_minus_inf_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=g, dtype=torch.float64) for _ in range(3))
    row = torch.tensor([0.0] * 6 + [math.log(0.3)] * 2 + [-math.inf] * 2, dtype=torch.float64)
    masked = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=row.view(1, 1, 1, -1))
    k2, v2, rest, keep = drop_unseen_keys(k, v, row, key_axis=2)
    assert k2.shape[2] == 8 and keep.tolist() == [True] * 8 + [False] * 2 and torch.equal(rest, row[:8])
    dropped = torch.nn.functional.scaled_dot_product_attention(q, k2, v2, attn_mask=rest.view(1, 1, 1, -1))
    assert torch.allclose(masked, dropped, atol=1e-12)
    same = drop_unseen_keys(k, v, torch.zeros(10, dtype=torch.float64), 2)
    assert same[0] is k and same[1] is v
