"""α and β on reference-latent models, in-process on ComfyUI's real classes: the tiny Flux as FLUX.1 Kontext (the
same architecture; references through core's ``reference_latents``). The reductions that must hold:

* α = 0 ≡ reference 1 alone: max |Δ| = 0 against our own single-reference run (ref 2's keys are dropped), and
  against core's ReferenceLatent + SamplerCustomAdvanced (euler) within 1e-5 (two Euler implementations' rounding);
* α = 1: reference 1's picture has no influence at all (max |Δ| = 0 when it is replaced); against reference 2
  alone it differs, because reference 2 keeps its position offset as the second reference (measured, asserted > 0);
* α = 0.5, β1 = β2 = 1 ≡ plain two-reference sampling (no hook is installed; against core within 1e-5);
* one DiT pass per step (NFE as without the references)."""
import math

import pytest
import torch

from tests.custom_nodes.vmdiff_test_nodes.scorers import ForcedScorer
from tests.support.reference_stand_ins import PassCounter, reference_image
from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
load_pack()
from vmdiff_cli import tiny_models  # noqa: E402

from vmdiff_pack.nodes.auto_tune import VMDiffAutoTune  # noqa: E402
from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise  # noqa: E402
from vmdiff_pack.nodes.mix_tokens_n import VMDiffMixTokensN  # noqa: E402
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise  # noqa: E402
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode  # noqa: E402
from vmdiff_pack.nodes.reference_encode import VMDiffReferenceEncode  # noqa: E402
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.reference import ReferenceAttentionBias, OVERRIDE_KEY  # noqa: E402
from vmdiff_pack.vmdiff_ops import flow_sigma_grid, flux_mu  # noqa: E402

SIZE = dict(width=32, height=48)
STEPS = dict(steps=8, t_den_step=4)
#: our Euler (x + Δσ·(x − x̂0)/σ in vmdiff_ops) against core's k-diffusion euler: float32 rounding only
CORE_TOL = 1e-5


def image(seed, h=40, w=56):
    return reference_image(seed, h, w)



@pytest.fixture(scope="module")
def kontext():
    vae = tiny_models.tiny_vae(seed=0)
    enc = lambda img: VMDiffReferenceEncode.execute(vae, img).result[0]  # noqa: E731
    return {"model": tiny_models.tiny_flux(seed=0), "vae": vae,
            "cond": tiny_models.tiny_flux_conditioning(seed=0, text_tokens=5),
            "refs": (enc(image(1)), enc(image(2, 48, 32)), enc(image(3))), "enc": enc}


def blend(k, r1, r2, model=None, **kw):
    args = dict(seed=42, **SIZE, **STEPS)
    args.update(kw)
    return VMDiffBlendingNoise.execute(model or k["model"], r1, r2, k["cond"], **args).result


def mix(k, eps_b, r1, r2, model=None, **kw):
    return VMDiffMixingDenoise.execute(model or k["model"], eps_b, r1, r2, k["cond"], steps=8, **kw).result[0][
        "samples"]


def core_sampling(k, eps_b, latents, guidance=4.0):
    """Core's own multi-reference sampling: ReferenceLatent per image + BasicGuider + euler on our σ grid,
    starting from ε_b (SamplerCustomAdvanced with ε_b as NOISE)."""
    from comfy_extras.nodes_custom_sampler import BasicGuider, KSamplerSelect, SamplerCustomAdvanced
    from comfy_extras.nodes_edit_model import ReferenceLatent
    from comfy_extras.nodes_flux import FluxGuidance

    cond = FluxGuidance.execute(k["cond"], guidance).result[0]
    for lat in latents:
        cond = ReferenceLatent.execute(cond, {"samples": lat}).result[0]
    guider = BasicGuider.execute(k["model"], cond).result[0]
    noise = eps_b[1]
    sigmas = flow_sigma_grid(8, flux_mu(**SIZE))
    latent = {"samples": torch.zeros_like(eps_b[0]["samples"])}
    return SamplerCustomAdvanced.execute(noise, guider, KSamplerSelect.execute("euler").result[0], sigmas,
                                         latent).result[0]["samples"]


def test_reference_encode_is_core_vae_encode(kontext):
    import nodes

    ref = kontext["refs"][0]
    expected = nodes.VAEEncode().encode(kontext["vae"], image(1))[0]["samples"]
    assert len(ref.latents) == 1 and torch.equal(ref.latents[0], expected) and ref.bias == (0.0,)
    assert ref.latents[0].shape == (1, 16, 5, 7)
    rgba = VMDiffReferenceEncode.execute(kontext["vae"], torch.cat([image(1), torch.ones(1, 40, 56, 1)], -1))
    assert torch.equal(rgba.result[0].latents[0], expected) and "alpha" in rgba.ui.as_dict()["text"][0]


def test_alpha_0_is_reference_1_alone_exactly(kontext):
    r1, r2, _ = kontext["refs"]
    eps_b = blend(kontext, r1, r2)
    counter = PassCounter(kontext["model"])
    fused = mix(kontext, eps_b[0], r1, r2, model=counter.model, alpha=0.0)
    assert counter.refs == [2] * 8  # one DiT pass per step, both references in the sequence
    alone = mix(kontext, eps_b[0], r1, None, alpha=0.0)  # tokens_1 alone: plain single-reference sampling
    assert (fused - alone).abs().max().item() == 0.0
    core = core_sampling(kontext, eps_b, [r1.latents[0]])
    print(f"α = 0 vs core single-reference sampling: max |Δ| = {(fused - core).abs().max().item():.2e}")
    assert (fused - core).abs().max().item() <= CORE_TOL
    two = core_sampling(kontext, eps_b, [r1.latents[0], r2.latents[0]])
    assert (fused - two).abs().max().item() > 100 * CORE_TOL  # reference 2 did matter in plain sampling


def test_alpha_1_ignores_reference_1_and_keeps_reference_2s_position(kontext):
    r1, r2, r3 = kontext["refs"]
    eps_b = blend(kontext, r1, r2)
    fused = mix(kontext, eps_b[0], r1, r2, alpha=1.0)
    other_1 = mix(kontext, eps_b[0], r3, r2, alpha=1.0)  # reference 1 replaced by another picture, same shape
    assert (fused - other_1).abs().max().item() == 0.0
    alone_2 = core_sampling(kontext, eps_b, [r2.latents[0]])
    alone_1 = core_sampling(kontext, eps_b, [r1.latents[0]])
    position_gap = (fused - alone_2).abs().max().item()  # reference 2 at offset (index 1, h/w shifted by ref 1)
    between = (alone_1 - alone_2).abs().max().item()
    print(f"α = 1 vs reference 2 alone: {position_gap:.4f}; reference 1 alone vs reference 2 alone: {between:.4f}")
    assert position_gap > 0  # what differs: reference 2's RoPE offset as the second reference (random weights:
    # how close it stays to reference 2 alone is not a property of the rule; the server test measures it too)


def test_alpha_half_beta_one_is_plain_two_reference_sampling(kontext):
    r1, r2, _ = kontext["refs"]
    model = kontext["model"].clone()
    probe = ReferenceAttentionBias(torch.zeros(1, 2), [12, 8])
    model.model_options["transformer_options"][OVERRIDE_KEY] = probe  # a zero-bias hook: must change nothing
    eps_b = blend(kontext, r1, r2, beta_1=1.0, beta_2=1.0)
    fused = mix(kontext, eps_b[0], r1, r2, alpha=0.5)
    hooked = mix(kontext, eps_b[0], r1, r2, model=model, alpha=0.5)
    assert probe.calls == 8 * 2  # every attention of the double and the single block, every step
    assert (fused - hooked).abs().max().item() == 0.0
    core = core_sampling(kontext, eps_b, [r1.latents[0], r2.latents[0]])
    print(f"α = 0.5 vs core two-reference sampling: max |Δ| = {(fused - core).abs().max().item():.2e}")
    assert (fused - core).abs().max().item() <= CORE_TOL
    assert torch.equal(blend(kontext, r1, r2, model=model)[0]["samples"], eps_b[0]["samples"])


def test_beta_weighs_the_references_in_blending_noise_at_the_same_nfe(kontext):
    r1, r2, _ = kontext["refs"]
    counter = PassCounter(kontext["model"])
    eps_b, _, preview = blend(kontext, r1, r2, model=counter.model, beta_1=1.0, beta_2=0.5)
    assert counter.refs == [2] * 10 and eps_b["vmdiff"]["nfe"] == 10  # 2·(t_den + 1): as on Redux
    plain = blend(kontext, r1, r2)[0]["samples"]
    assert not torch.allclose(eps_b["samples"], plain, atol=1e-4)
    louder_1 = blend(kontext, r1, r2, beta_1=2.0, beta_2=1.0)[0]["samples"]
    assert not torch.allclose(louder_1, plain, atol=1e-4) and torch.isfinite(louder_1).all()
    assert preview["samples"].shape == (1, 16, 6, 4)


def test_a_batch_of_alphas_and_betas_equals_the_single_runs(kontext):
    from vmdiff_pack.vmdiff_comfy.stages.blending_noise import run_blending_noise
    from vmdiff_pack.vmdiff_comfy.stages.mixing_denoise import run_mixing_denoise
    from vmdiff_pack.vmdiff_comfy.stages.settings import StageSettings

    r1, r2, _ = kontext["refs"]
    s = StageSettings(**STEPS)
    both = run_blending_noise(kontext["model"], r1, r2, kontext["cond"], seed=1, **SIZE, settings=s,
                              beta_1=[1.0, 1.5], beta_2=[0.7, 1.0], node=None).eps_b
    for i, (b1, b2) in enumerate([(1.0, 0.7), (1.5, 1.0)]):
        one = run_blending_noise(kontext["model"], r1, r2, kontext["cond"], seed=1, **SIZE, settings=s,
                                 beta_1=b1, beta_2=b2, node=None).eps_b
        assert torch.allclose(both[i:i + 1], one, atol=1e-5)
    alphas = [0.0, 0.3, 0.5, 1.0]
    batch = run_mixing_denoise(kontext["model"], both[:1], r1, r2, kontext["cond"], settings=s, alpha=alphas).latent
    for i, a in enumerate(alphas):
        one = run_mixing_denoise(kontext["model"], both[:1], r1, r2, kontext["cond"], settings=s, alpha=a).latent
        assert torch.allclose(batch[i:i + 1], one, atol=1e-5)


def test_mix_tokens_n_weights_references(kontext):
    r1, r2, r3 = kontext["refs"]
    sinp, scat = VMDiffMixTokensN.execute(r1, r2, r3, weight_1=1, weight_2=1, weight_3=1).result
    assert sinp.bias == (0.0, 0.0, 0.0) and scat.bias == (0.0, 0.0, 0.0) and len(scat.latents) == 3
    eps_b = blend(kontext, scat, None)
    plain_3 = core_sampling(kontext, eps_b, [r.latents[0] for r in (r1, r2, r3)])
    assert (mix(kontext, eps_b[0], sinp, None) - plain_3).abs().max().item() <= CORE_TOL
    sinp0, _ = VMDiffMixTokensN.execute(r1, r2, r3, weight_1=1, weight_2=1, weight_3=0).result
    assert sinp0.bias[2] == -math.inf
    pair, _ = VMDiffMixTokensN.execute(r1, r2).result
    assert (mix(kontext, eps_b[0], sinp0, None) - mix(kontext, eps_b[0], pair, None)).abs().max().item() == 0.0
    sinp_a, _ = VMDiffMixTokensN.execute(r1, r2, weight_1=0.7, weight_2=0.3).result
    assert sinp_a.bias == pytest.approx((0.0, math.log(0.6)))
    assert (mix(kontext, eps_b[0], sinp_a, None) - mix(kontext, eps_b[0], r1, r2, alpha=0.3)).abs().max() == 0


def test_auto_tune_runs_on_references(kontext):
    scorer = ForcedScorer(lambda k: 0.1 * (k + 1) % 0.7)
    r1, r2, _ = kontext["refs"]
    counter = PassCounter(kontext["model"])
    result = VMDiffAutoTune.execute(counter.model, r1, r2, kontext["cond"], kontext["vae"], scorer, seed=3,
                                    width=32, height=32, steps=4, t_den_step=1, alpha_max_iter=3)
    image_out = result.result[0]
    assert image_out.shape == (1, 32, 32, 3) and torch.isfinite(image_out).all()
    assert scorer.calls >= 3 and set(counter.refs) == {2}


def test_bad_reference_inputs_name_the_input(kontext):
    r1, r2, _ = kontext["refs"]
    clip_vision, style = tiny_models.tiny_clip_vision(), tiny_models.tiny_style_model()
    z = VMDiffReduxEncode.execute(clip_vision, style, image(1)).result[0]
    with pytest.raises(VMDiffInputError, match="tokens_2: a Redux token set"):
        blend(kontext, r1, z)
    with pytest.raises(VMDiffInputError, match="tokens_1: a Redux token set"):
        VMDiffMixTokensN.execute(z, r2)
    eps_b = blend(kontext, r1, r2)
    no_pooled = [[kontext["cond"][0][0], {}]]
    with pytest.raises(VMDiffInputError, match="conditioning: the model reads a 32-wide pooled"):
        VMDiffMixingDenoise.execute(kontext["model"], eps_b[0], r1, r2, no_pooled, steps=4)
    empty_text = tiny_models.tiny_flux_conditioning(seed=0, text_tokens=0)
    with pytest.raises(VMDiffInputError, match="conditioning: has no text tokens"):
        blend(kontext, r1, r2, conditioning=None) if False else VMDiffBlendingNoise.execute(
            kontext["model"], r1, r2, empty_text, seed=1, **SIZE, **STEPS)
    sd_vae = tiny_models.tiny_vae(latent_channels=4)
    r4 = VMDiffReferenceEncode.execute(sd_vae, image(1)).result[0]
    with pytest.raises(VMDiffInputError, match="tokens_2: its reference latent has 4 channels"):
        blend(kontext, r1, r4)
    with pytest.raises(VMDiffInputError, match="mask: a spatial α"):
        VMDiffMixingDenoise.execute(kontext["model"], eps_b[0], r1, r2, kontext["cond"], steps=4,
                                    mask=torch.ones(1, 48, 32))


@pytest.mark.parametrize("make, says", [
    (lambda c: [[torch.cat([c[0][0]] * 2), {**c[0][1], "pooled_output": torch.cat([c[0][1]["pooled_output"]] * 2)}]],
     "a batch of 2 prompts"),
    (lambda c: c + c, "holds 2 prompts"),
    (lambda c: [[c[0][0], {**c[0][1], "reference_latents": [torch.zeros(1, 16, 5, 7)]}]], "reference.latents"),
    (lambda c: [[c[0][0], {**c[0][1], "area": (8, 8, 0, 0)}]], "'area'"),
])
def test_a_conditioning_the_reference_path_would_cut_is_refused_by_name(kontext, make, says):
    """The reference path reads one prompt (its text tokens are the context): a batch, several entries, or a key it
    would drop (a ReferenceLatent of the user's own, an area) is refused by name, in both stages."""
    r1, r2, _ = kontext["refs"]
    bad = dict(kontext, cond=make(kontext["cond"]))
    with pytest.raises(VMDiffInputError, match=f"conditioning: .*{says}"):
        blend(bad, r1, r2)
    eps_b = blend(kontext, r1, r2)
    with pytest.raises(VMDiffInputError, match=f"conditioning: .*{says}"):
        mix(bad, eps_b[0], r1, r2, alpha=0.3)
