"""The VMDiff nodes called in-process on ComfyUI's real classes (tiny random-weight stand-ins,
vmdiff_cli/tiny_models)."""
import pytest
import torch

from vmdiff_cli.comfy_env import load_pack

pack = load_pack()
from vmdiff_cli import tiny_models

from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.stages.flow import phase_conditioning
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
from vmdiff_pack.vmdiff_comfy.stages.prompt import fusion_prompt
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
from vmdiff_pack.vmdiff_ops import flow_sigma_grid, flux_mu, mix_tokens

SIZE = dict(width=32, height=48)


def image(seed, h=40, w=56, c=3):
    return torch.rand(1, h, w, c, generator=torch.Generator().manual_seed(seed))


class CallLog:
    """Records every DiT forward through ComfyUI's own model_function_wrapper hook."""

    def __init__(self, model):
        self.model = model.clone()
        self.calls = []
        self.model.set_model_unet_function_wrapper(self)

    def __call__(self, apply_model, args):
        c = args["c"]
        self.calls.append({"t": float(args["timestep"][0]), "guidance": float(c["guidance"][0]),
                           "context_tokens": c["c_crossattn"].shape[1]})
        return apply_model(args["input"], args["timestep"], **c)


@pytest.fixture(scope="module")
def models(stand_ins):
    return stand_ins


@pytest.fixture(scope="module")
def tokens(models):
    enc = lambda img: VMDiffReduxEncode.execute(models["clip_vision"], models["style"], img).result[0]  # noqa: E731
    return enc(image(1)), enc(image(2))


def blend(models, tokens, model=None, **kw):
    args = dict(seed=42, **SIZE, steps=20, t_den_step=10)
    args.update(kw)
    return VMDiffBlendingNoise.execute(model or models["model"], tokens[0], tokens[1], models["cond"], **args)


def mix(models, tokens, eps_b, model=None, **kw):
    return VMDiffMixingDenoise.execute(model or models["model"], eps_b, tokens[0], tokens[1], models["cond"], **kw)


def test_redux_encode_gives_raw_token_sets(models, tokens):
    z1, z2 = tokens
    assert z1.tokens.shape == (1, 16, 64) and z2.tokens.shape == (1, 16, 64)
    assert z1.encoder_id == z2.encoder_id
    assert not torch.allclose(z1.tokens, z2.tokens)
    expected = models["style"].get_cond(models["clip_vision"].encode_image(image(1), crop=False))
    assert torch.allclose(z1.tokens, expected.float())
    other = VMDiffReduxEncode.execute(models["clip_vision"], models["other_style"], image(1)).result[0]
    assert other.encoder_id != z1.encoder_id


def test_redux_encode_handles_alpha_and_grey_and_refuses_batches(models, tokens):
    rgba = torch.cat([image(1), torch.rand(1, 40, 56, 1)], dim=-1)
    out = VMDiffReduxEncode.execute(models["clip_vision"], models["style"], rgba)
    assert torch.allclose(out.result[0].tokens, tokens[0].tokens)
    assert "alpha" in out.ui.as_dict()["text"][0]
    grey = VMDiffReduxEncode.execute(models["clip_vision"], models["style"], image(3, c=1)).result[0]
    assert grey.tokens.shape == (1, 16, 64)
    with pytest.raises(VMDiffInputError, match="image: got a batch of 2"):
        VMDiffReduxEncode.execute(models["clip_vision"], models["style"], torch.rand(2, 40, 56, 3))
    nearest = VMDiffReduxEncode.execute(models["clip_vision"], models["style"], image(1),
                                        resize="nearest_512_squash").result[0]
    assert nearest.tokens.shape == (1, 16, 64) and not torch.equal(nearest.tokens, tokens[0].tokens)


def test_blending_noise_runs_11_plus_11_passes_with_per_phase_guidance(models, tokens):
    log = CallLog(models["model"])
    out = blend(models, tokens, model=log.model, guidance_denoise=5.0, guidance_invert=0.0, beta_1=1.0, beta_2=1.0)
    eps_b_latent, noise, preview = out.result
    assert len(log.calls) == 22
    assert [c["guidance"] for c in log.calls] == [5.0] * 11 + [0.0] * 11
    assert all(c["context_tokens"] == 32 for c in log.calls)  # SCat: 16 + 16 Redux tokens, no text tokens
    sigmas = flow_sigma_grid(20, flux_mu(32, 48))
    expected_t = [float(s) for s in sigmas[:11]]
    assert [c["t"] for c in log.calls] == pytest.approx(expected_t + expected_t[::-1], abs=1e-6)
    eps_b = eps_b_latent["samples"]
    assert eps_b.shape == (1, 16, 6, 4) and torch.isfinite(eps_b).all()
    assert eps_b_latent["vmdiff"]["nfe"] == 22
    assert "t_den = step 10 of 20" in out.ui.as_dict()["text"][0]
    eps = torch.randn(1, 16, 6, 4, generator=torch.manual_seed(42))
    assert not torch.allclose(eps_b, eps, atol=1e-3)  # the round trip moved it: ε_b carries the blend
    assert noise.generate_noise({"samples": torch.zeros(1, 16, 6, 4)}).shape == (1, 16, 6, 4)
    assert preview["samples"].shape == (1, 16, 6, 4)


def test_blending_noise_is_deterministic_and_depends_on_seed_and_beta(models, tokens):
    a = blend(models, tokens).result[0]["samples"]
    assert torch.equal(a, blend(models, tokens).result[0]["samples"])
    assert not torch.allclose(a, blend(models, tokens, seed=43).result[0]["samples"])
    assert not torch.allclose(a, blend(models, tokens, beta_2=2.0).result[0]["samples"])
    assert not torch.allclose(a, blend(models, tokens, inversion="exact-euler").result[0]["samples"])


def test_mixing_denoise_runs_20_passes_and_alpha_matters(models, tokens):
    eps_b = blend(models, tokens).result[0]
    log = CallLog(models["model"])
    out = mix(models, tokens, eps_b, model=log.model, alpha=0.5, guidance=4.0, steps=20)
    assert len(log.calls) == 20 and {c["guidance"] for c in log.calls} == {4.0}
    assert {c["context_tokens"] for c in log.calls} == {16}
    latent = out.result[0]["samples"]
    assert latent.shape == (1, 16, 6, 4) and torch.isfinite(latent).all()
    assert torch.equal(latent, mix(models, tokens, eps_b, alpha=0.5).result[0]["samples"])
    assert not torch.allclose(latent, mix(models, tokens, eps_b, alpha=0.8).result[0]["samples"])
    assert not torch.allclose(latent, mix(models, tokens, eps_b, alpha=0.5, mix_rule="slerp").result[0]["samples"])
    pixels = models["vae"].decode(latent)
    assert pixels.shape == (1, 48, 32, 3) and torch.isfinite(pixels).all() and pixels.std() > 0


def test_eps_b_as_noise_drives_stock_sampler_custom_advanced_to_the_same_latent(models, tokens):
    """ε_b offered as ComfyUI NOISE: SamplerCustomAdvanced + BasicGuider + euler reproduces Mixing Denoise."""
    from comfy_extras.nodes_custom_sampler import BasicGuider, KSamplerSelect, SamplerCustomAdvanced

    eps_b_latent, noise, _ = blend(models, tokens).result
    ours = mix(models, tokens, eps_b_latent, alpha=0.3).result[0]["samples"]
    sinp = mix_tokens(tokens[0].tokens, tokens[1].tokens, 0.3, "official")
    cond = phase_conditioning(models["cond"], sinp, 4.0, "redux_only", None)
    guider = BasicGuider.execute(models["model"], cond).result[0]
    sampler = KSamplerSelect.execute("euler").result[0]
    sigmas = flow_sigma_grid(20, flux_mu(32, 48))
    stock = SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas,
                                          {"samples": torch.zeros(1, 16, 6, 4)}).result[0]["samples"]
    assert torch.allclose(stock, ours, atol=1e-4)


def test_text_and_redux_context_prepends_the_prompt_tokens(models, tokens):
    cond = tiny_models.tiny_flux_conditioning(seed=0, text_tokens=5)
    log = CallLog(models["model"])
    VMDiffBlendingNoise.execute(log.model, tokens[0], tokens[1], cond, seed=1, **SIZE, steps=4, t_den_step=1,
                                context="text_and_redux")
    assert {c["context_tokens"] for c in log.calls} == {5 + 32}


def test_bad_inputs_name_the_input(models, tokens):
    other = VMDiffReduxEncode.execute(models["clip_vision"], models["other_style"], image(2)).result[0]
    with pytest.raises(VMDiffInputError, match="tokens_2: made by a different"):
        VMDiffBlendingNoise.execute(models["model"], tokens[0], other, models["cond"], seed=1, **SIZE)
    with pytest.raises(VMDiffInputError, match="beta_2"):
        blend(models, tokens, beta_2=0.0)
    with pytest.raises(VMDiffInputError, match="t_den_step"):
        blend(models, tokens, steps=8, t_den_step=7)
    assert "t_den_step: 7 is outside the 8-step grid" in VMDiffBlendingNoise.validate_inputs(steps=8, t_den_step=7)
    assert VMDiffBlendingNoise.validate_inputs(steps=20, t_den_step=10) is True
    # ComfyUI skips its min/max check of the inputs validate_inputs takes; a linked input is None until it runs
    assert "steps: 1 is below the minimum 2" in VMDiffBlendingNoise.validate_inputs(steps=1, t_den_step=0)
    assert VMDiffBlendingNoise.validate_inputs(steps=20, t_den_step=None) is True
    with pytest.raises(VMDiffInputError, match="width"):
        blend(models, tokens, width=40)
    eps_b = blend(models, tokens, steps=4, t_den_step=1).result[0]
    with pytest.raises(VMDiffInputError, match="alpha"):
        mix(models, tokens, eps_b, alpha=1.5)
    with pytest.raises(VMDiffInputError, match="eps_b: expected the eps_b output"):
        mix(models, tokens, {"samples": torch.zeros(1, 16, 6, 4)})
    nan = dict(eps_b, samples=torch.full_like(eps_b["samples"], float("nan")))
    with pytest.raises(VMDiffInputError, match="eps_b: the noise contains NaN"):
        mix(models, tokens, nan)
    wide = tiny_models.tiny_style_model(seed=0, context_dim=48)
    wide_tokens = VMDiffReduxEncode.execute(models["clip_vision"], wide, image(1)).result[0]
    with pytest.raises(VMDiffInputError, match="tokens_1: tokens are 48 wide"):
        VMDiffBlendingNoise.execute(models["model"], wide_tokens, wide_tokens, models["cond"], seed=1, **SIZE)
    with pytest.raises(VMDiffInputError, match="conditioning"):
        VMDiffBlendingNoise.execute(models["model"], tokens[0], tokens[1], [[torch.zeros(1, 0, 64), {}]], seed=1,
                                    **SIZE)
    with pytest.raises(VMDiffInputError, match="label_2"):
        fusion_prompt("owl", "  ")


def test_fusion_prompt_template():
    assert fusion_prompt("owl", "jar") == "A photo of owl creatively fused with jar."
    assert (fusion_prompt(" panda ", "Charizard figurine")
            == "A photo of panda creatively fused with Charizard figurine.")


def test_pack_registers_its_nodes_through_comfy_entrypoint():
    import asyncio

    ext = asyncio.run(pack.comfy_entrypoint())
    ids = {n.define_schema().node_id for n in asyncio.run(ext.get_node_list())}
    assert {"VMDiffReduxEncode", "VMDiffFusionPrompt", "VMDiffBlendingNoise", "VMDiffMixingDenoise"} <= ids


def test_bf16_state_rounds_every_latent_like_the_reference(models, tokens):
    eps_b = blend(models, tokens, steps=6, t_den_step=2, bf16_state=True).result[0]["samples"]
    assert torch.equal(eps_b, eps_b.to(torch.bfloat16).float())
    assert not torch.equal(eps_b, blend(models, tokens, steps=6, t_den_step=2).result[0]["samples"])
