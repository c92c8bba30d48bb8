"""Mixing Denoise with an α map (part-level fusion, docs/method.md) on the tiny Flux, through ComfyUI's real sampling
path (the attention_mask conditioning key reaches every DiT block): exact reductions, isolation by perturbation, NFE."""
import pytest
import torch

from vmdiff_cli.comfy_env import load_pack

pack = load_pack()

from tests.nodes.test_nodes_inprocess import CallLog, image
from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
from vmdiff_pack.vmdiff_comfy.stages.regional import mask_on_token_grid

# 64² px → latent 8×8 → 4×4 image tokens; a mask with its right half set → token columns 2, 3 are region B
LEFT, RIGHT = (slice(None), slice(None), slice(None), slice(0, 4)), (slice(None), slice(None), slice(None),
                                                                      slice(4, 8))
HALF = torch.zeros(1, 64, 64)
HALF[:, :, 32:] = 1.0


@pytest.fixture(scope="module")
def setup(stand_ins):
    models = stand_ins
    enc = lambda img: VMDiffReduxEncode.execute(models["clip_vision"], models["style"], img).result[0]  # noqa: E731
    tokens = [enc(image(1)), enc(image(2)), enc(image(3))]
    eps_b = VMDiffBlendingNoise.execute(models["model"], tokens[0], tokens[1], models["cond"], seed=42, width=64,
                                        height=64, steps=8, t_den_step=4).result[0]
    return models, tokens, eps_b


def mix(setup, model=None, tokens_2=1, steps=8, **kw):
    models, tokens, eps_b = setup
    out = VMDiffMixingDenoise.execute(model or models["model"], eps_b, tokens[0], tokens[tokens_2], models["cond"],
                                      steps=steps, **kw)
    return out.result[0]["samples"], out.ui.as_dict()["text"][0]


@pytest.mark.parametrize("fill, plain_alpha", [(0.0, 0.2), (1.0, 0.7)])
def test_constant_map_reproduces_plain_mixing_denoise_bit_for_bit(setup, fill, plain_alpha):
    plain, _ = mix(setup, alpha=plain_alpha)
    regional, text = mix(setup, alpha=0.2, alpha_masked=0.7, mask=torch.full((1, 64, 64), fill))
    assert torch.equal(regional, plain)
    assert "1 context block(s)" in text


def test_two_regions_with_equal_alphas_reproduce_plain_bit_for_bit(setup):
    plain, _ = mix(setup, alpha=0.4)
    for rule in ("whole_image", "own_region"):
        assert torch.equal(mix(setup, alpha=0.4, alpha_masked=0.4, mask=HALF, image_attention=rule)[0], plain)


def test_two_regions_one_pass_per_step_with_two_context_blocks(setup):
    log = CallLog(setup[0]["model"])
    latent, text = mix(setup, model=log.model, alpha=0.2, alpha_masked=0.8, mask=HALF)
    assert len(log.calls) == 8  # NFE unchanged: one DiT pass per step
    assert {c["context_tokens"] for c in log.calls} == {2 * 16}
    assert "2 context block(s), α = 0.2, 0.8" in text and "8 NFE" in text
    plain_a, plain_b = mix(setup, alpha=0.2)[0], mix(setup, alpha=0.8)[0]
    assert not torch.allclose(latent, plain_a) and not torch.allclose(latent, plain_b)


@pytest.mark.parametrize("changed", ["block_B", "block_A"])
def test_own_region_isolation_by_perturbation_over_the_whole_denoise(setup, changed):
    """own_region: the final latent of region A is bit-identical when only block B's tokens change (and vice
    versa) — a different α for B, or a different image 2 altogether — over all 8 DiT passes."""
    base = dict(alpha=0.0, alpha_masked=1.0, mask=HALF, image_attention="own_region")
    fixed, moved = (LEFT, RIGHT) if changed == "block_B" else (RIGHT, LEFT)
    # α = 0 / α_masked = 1 make block A = z1 and block B = z2 exactly; image 3's tokens replace z2 in block B
    other = dict(base, tokens_2=2) if changed == "block_B" else dict(base, alpha=0.3)
    a, _ = mix(setup, **base)
    b, _ = mix(setup, **other)
    assert torch.equal(a[fixed], b[fixed])
    assert not torch.allclose(a[moved], b[moved])


def test_whole_image_isolation_holds_per_attention_and_the_regions_talk_through_the_image(setup):
    """whole_image: in the first DiT block the image tokens of region A do not see block B (their output is
    bit-identical when block B changes; captured with ComfyUI's own block-replace patch); the final latent of
    region A does change, through region B's image tokens in the later (single-stream) block."""
    captured = []

    def first_double_block(args, extra):
        out = extra["original_block"](args)
        captured.append(out["img"][0].reshape(4, 4, -1)[:, :2].clone())  # region A's image tokens
        return out

    model = setup[0]["model"].clone()
    model.set_model_patch_replace(first_double_block, "dit", "double_block", 0)
    base = dict(alpha=0.0, alpha_masked=1.0, mask=HALF, image_attention="whole_image")
    a, _ = mix(setup, model=model, steps=2, **base)
    b, _ = mix(setup, model=model, steps=2, tokens_2=2, **base)
    assert len(captured) == 4 and torch.equal(captured[0], captured[2])  # step 1 of each run: the same ε_b
    assert not torch.allclose(a[LEFT], b[LEFT])


def test_soft_mask_is_quantised_to_k_levels(setup):
    ramp = torch.linspace(0, 1, 64).expand(1, 64, 64)
    grid = mask_on_token_grid(ramp, (4, 4))
    assert grid.shape == (4, 4) and torch.all(grid[:, 1:] >= grid[:, :-1])  # bilinear, left → right
    log = CallLog(setup[0]["model"])
    _, text = mix(setup, model=log.model, alpha=0.2, alpha_masked=0.8, mask=ramp, mask_levels=3)
    assert "3 context block(s), α = 0.2, 0.5, 0.8" in text
    assert {c["context_tokens"] for c in log.calls} == {3 * 16}


@pytest.mark.parametrize("kwargs, match", [
    (dict(mask=torch.zeros(2, 64, 64)), "mask: expected one MASK"),
    (dict(mask=torch.full((1, 64, 64), 2.0)), r"mask: values must lie in \[0, 1\]"),
    (dict(mask=HALF, alpha_masked=1.5), "alpha_masked: 1.5 is above the maximum"),
    (dict(mask=HALF, image_attention="nearby"), "image_attention: unknown value 'nearby'"),
    (dict(mask=HALF, mask_levels=1), "mask_levels: 1 is below the minimum 2"),
    (dict(mask=HALF, tokens_2=None), "mask: a spatial α needs tokens_2"),
])
def test_bad_regional_inputs_name_the_input(setup, kwargs, match):
    models, tokens, eps_b = setup
    if kwargs.get("tokens_2", 1) is None:
        kwargs.pop("tokens_2")
        with pytest.raises(VMDiffInputError, match=match):
            VMDiffMixingDenoise.execute(models["model"], eps_b, tokens[0], None, models["cond"], steps=2, **kwargs)
        return
    with pytest.raises(VMDiffInputError, match=match):
        mix(setup, steps=2, **kwargs)
