"""VMDiff Random Noise and VMDiff Mix Tokens N in-process on ComfyUI's real classes (tiny in-process stand-ins),
and Blending Noise / Mixing Denoise taking their ready conditions (tokens_2 unconnected)."""
import pytest
import torch

from tools.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
load_pack()
from tools import tiny_models  # noqa: E402

from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.blending_noise import initial_noise  # noqa: E402
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError  # noqa: E402
from vmdiff_pack.nodes.mix_tokens_n import VMDiffMixTokensN  # noqa: E402
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise  # noqa: E402
from vmdiff_pack.nodes.random_noise import VMDiffRandomNoise  # noqa: E402
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode  # noqa: E402

SIZE = dict(width=32, height=32)


@pytest.fixture(scope="module")
def models():
    return {"model": tiny_models.tiny_flux(seed=0), "clip_vision": tiny_models.tiny_clip_vision(seed=0),
            "style": tiny_models.tiny_style_model(seed=0), "other_style": tiny_models.tiny_style_model(seed=1),
            "cond": tiny_models.tiny_flux_conditioning(seed=0)}


@pytest.fixture(scope="module")
def tokens(models):
    images = [torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    return [VMDiffReduxEncode.execute(models["clip_vision"], models["style"], im).result[0] for im in images]


def mix_n(*sets, weights=(1.0, 1.0, 1.0, 1.0), rule="slerp"):
    kw = {f"tokens_{k + 1}": t for k, t in enumerate(sets)}
    kw.update({f"weight_{k + 1}": w for k, w in enumerate(weights)})
    return VMDiffMixTokensN.execute(**kw, mix_rule=rule).result


def denoise(models, eps, t1, t2=None, **kw):
    return VMDiffMixingDenoise.execute(models["model"], eps, t1, t2, models["cond"], steps=3, **kw).result[0]["samples"]


def test_random_noise_is_blending_noises_start_and_feeds_mixing_denoise(models, tokens):
    eps = VMDiffRandomNoise.execute(seed=7, **SIZE).result[0]
    assert torch.equal(eps["samples"], initial_noise(7, 16, 32, 32))
    assert not torch.equal(eps["samples"], VMDiffRandomNoise.execute(seed=8, **SIZE).result[0]["samples"])
    a = denoise(models, eps, tokens[0], tokens[1], alpha=0.5)
    assert a.shape == (1, 16, 4, 4) and torch.isfinite(a).all()
    assert torch.equal(a, denoise(models, eps, tokens[0], tokens[1], alpha=0.5))
    with pytest.raises(VMDiffInputError, match="width"):
        VMDiffRandomNoise.execute(seed=7, width=40, height=32)


@pytest.mark.parametrize("rule", ["slerp", "lerp"])
def test_two_premixed_sets_give_the_two_way_mixing_denoise(models, tokens, rule):
    eps = VMDiffRandomNoise.execute(seed=3, **SIZE).result[0]
    mixed, _ = mix_n(tokens[0], tokens[1], weights=(0.7, 0.3), rule=rule)
    premixed = denoise(models, eps, mixed)
    two_way = denoise(models, eps, tokens[0], tokens[1], alpha=0.3, mix_rule=rule)
    torch.testing.assert_close(premixed, two_way, atol=1e-4, rtol=1e-4)


def test_node_is_order_invariant_and_the_third_set_matters(models, tokens):
    z1, z2, z3 = tokens
    mixed, concat = mix_n(z1, z2, z3, weights=(0.2, 0.3, 0.5))
    permuted, concat_p = mix_n(z3, z1, z2, weights=(0.5, 0.2, 0.3))
    torch.testing.assert_close(permuted.tokens, mixed.tokens, atol=1e-6, rtol=1e-5)
    assert concat.tokens.shape[1] == 3 * z1.tokens.shape[1] == concat_p.tokens.shape[1]
    two, _ = mix_n(z1, z2, weights=(0.4, 0.6))
    assert not torch.allclose(two.tokens, mixed.tokens, atol=1e-3)
    eps = VMDiffRandomNoise.execute(seed=3, **SIZE).result[0]
    torch.testing.assert_close(denoise(models, eps, permuted), denoise(models, eps, mixed), atol=1e-4, rtol=1e-4)


def test_blending_noise_on_the_concat_equals_the_pair(models, tokens):
    z1, z2 = tokens[:2]
    _, concat = mix_n(z1, z2)
    args = dict(seed=5, **SIZE, steps=4, t_den_step=1)
    pair = VMDiffBlendingNoise.execute(models["model"], z1, z2, models["cond"], **args).result[0]["samples"]
    ready = VMDiffBlendingNoise.execute(models["model"], concat, None, models["cond"], **args).result[0]["samples"]
    assert torch.equal(pair, ready)


def test_bad_weights_and_mismatched_sets_are_refused_by_name(models, tokens):
    with pytest.raises(VMDiffInputError, match="weights.*at least one weight"):
        mix_n(*tokens, weights=(0.0, 0.0, 0.0, 1.0))
    other = VMDiffReduxEncode.execute(models["clip_vision"], models["other_style"],
                                      torch.rand(1, 40, 40, 3)).result[0]
    with pytest.raises(VMDiffInputError, match="tokens_3: made by a different"):
        mix_n(tokens[0], tokens[1], other)
