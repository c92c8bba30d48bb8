"""vmdiff_ops.regional: the α map → context blocks, and the joint-sequence attention mask (pure torch)."""
import pytest
import torch

from vmdiff_pack.vmdiff_ops.regional import alpha_levels, regional_attention_mask

INF = float("-inf")


def test_two_region_map_gives_two_blocks_in_level_order():
    m = torch.tensor([[0.0, 0.2, 0.7, 1.0], [0.0, 0.49, 0.51, 1.0]])
    alphas, index = alpha_levels(m, 0.2, 0.9, levels=2)
    assert alphas == [0.2, 0.9]
    assert index.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]


@pytest.mark.parametrize("value, expected", [(0.0, 0.3), (1.0, 0.8), (0.2, 0.3), (0.9, 0.8)])
def test_constant_map_is_one_block_with_the_exact_alpha(value, expected):
    alphas, index = alpha_levels(torch.full((3, 5), value), 0.3, 0.8, levels=2)
    assert alphas == [expected] and index.unique().tolist() == [0]  # == exactly: the plain SInp(α) is reproduced


def test_equal_alphas_share_one_block():
    alphas, index = alpha_levels(torch.tensor([[0.0, 1.0]]), 0.4, 0.4, levels=3)
    assert alphas == [0.4] and index.tolist() == [[0, 0]]


def test_soft_map_with_k_levels_takes_intermediate_alphas_and_drops_unused_levels():
    ramp = torch.linspace(0, 1, 9)[None]
    alphas, index = alpha_levels(ramp, 0.0, 1.0, levels=3)
    assert alphas == [0.0, 0.5, 1.0]
    assert index.tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2]]
    alphas, index = alpha_levels(torch.tensor([[0.0, 1.0]]), 0.0, 1.0, levels=5)  # levels 1…3 unused
    assert alphas == [0.0, 1.0] and index.tolist() == [[0, 1]]


@pytest.mark.parametrize("kwargs, match", [
    (dict(token_map=torch.zeros(1, 2, 2)), "token_map must be"),
    (dict(token_map=torch.full((2, 2), 1.5)), r"\[0, 1\]"),
    (dict(token_map=torch.full((2, 2), float("nan"))), "finite"),
    (dict(levels=1), "levels K"),
    (dict(alpha_masked=-0.1), "alpha_masked"),
])
def test_alpha_levels_rejects_bad_input(kwargs, match):
    args = dict(token_map=torch.zeros(2, 2), alpha=0.5, alpha_masked=0.5, levels=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        alpha_levels(**args)


def blocks_of(mask, n_ctx):
    """(context → context, context → image, image → context, image → image) quadrants of a mask."""
    return mask[:n_ctx, :n_ctx], mask[:n_ctx, n_ctx:], mask[n_ctx:, :n_ctx], mask[n_ctx:, n_ctx:]


@pytest.mark.parametrize("rule", ["whole_image", "own_region"])
def test_mask_routes_each_image_token_to_its_block_only(rule):
    index = torch.tensor([[0, 1, 1], [0, 0, 1]])  # image tokens 0, 3, 4 → block 0; 1, 2, 5 → block 1
    n = 4
    mask = regional_attention_mask(index, n, rule)
    assert mask.shape == (2 * n + 6, 2 * n + 6) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, INF}
    ctx_ctx, ctx_img, img_ctx, img_img = blocks_of(mask, 2 * n)
    flat = index.reshape(-1)
    block_of_ctx = torch.arange(2).repeat_interleave(n)
    # image token → context: only its own block
    assert torch.equal(img_ctx == 0, flat[:, None] == block_of_ctx[None, :])
    # context → context: own block only; context → image: only the image tokens of its block
    assert torch.equal(ctx_ctx == 0, block_of_ctx[:, None] == block_of_ctx[None, :])
    assert torch.equal(ctx_img == 0, block_of_ctx[:, None] == flat[None, :])
    same_region = flat[:, None] == flat[None, :]
    assert torch.equal(img_img == 0, torch.ones_like(same_region) if rule == "whole_image" else same_region)
    assert (mask == 0).any(dim=1).all()  # no query is left with nothing to attend to (no NaN rows)


def test_one_block_mask_allows_everything():
    assert torch.equal(regional_attention_mask(torch.zeros(2, 3, dtype=torch.long), 5), torch.zeros(11, 11))


def test_masked_attention_isolates_regions_in_a_two_layer_joint_attention():
    """The property the mask exists for, on plain SDPA over the joint sequence (two layers, like two DiT blocks):
    own_region — region A's output does not move when block B's tokens change; whole_image — it moves (through
    region B's image tokens) in layer 2, but not in layer 1."""
    gen = torch.Generator().manual_seed(0)
    index = torch.tensor([[0, 0, 1, 1]] * 3)
    n, d = 5, 8
    region_a = (index.reshape(-1) == 0)
    blocks = torch.randn(1, 2 * n, d, generator=gen)
    image = torch.randn(1, 12, d, generator=gen)
    perturbed = blocks.clone()
    perturbed[:, n:] += torch.randn(1, n, d, generator=gen)  # only block B (block 1) changes

    def layers(ctx, rule):
        x, mask, outs = torch.cat([ctx, image], 1), regional_attention_mask(index, n, rule), []
        for _ in range(2):
            x = x + torch.nn.functional.scaled_dot_product_attention(x, x, x, attn_mask=mask)
            outs.append(x[0, 2 * n:][region_a])
        return outs

    a1, a2 = layers(blocks, "own_region"), layers(perturbed, "own_region")
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    w1, w2 = layers(blocks, "whole_image"), layers(perturbed, "whole_image")
    assert torch.equal(w1[0], w2[0]) and not torch.allclose(w1[1], w2[1])


def test_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="image_attention"):
        regional_attention_mask(torch.zeros(2, 2, dtype=torch.long), 3, "nearby")
    with pytest.raises(ValueError, match="block_tokens"):
        regional_attention_mask(torch.zeros(2, 2, dtype=torch.long), 0)
