"""α and β on FLUX.2 reference images, in-process: the tiny FLUX.2 [klein] stand-in (vmdiff_cli/tiny_flux2: ComfyUI's
real
Flux2 classes, patch 1, 128 latent channels, ``index`` references, no guidance embedding), FLUX.2's VAE as ComfyUI
builds it, the fusion prompt through a real tokenizer widened to FLUX.2's text shape (no pooled vector). The σ grid
is core's Flux2Scheduler's. Reductions as for Kontext (tests/nodes/test_reference_inprocess.py): α = 0 ≡ reference 1
alone (max |Δ| = 0), α = 1 independent of reference 1's picture, α = 0.5 and β = 1 ≡ core's two-reference sampling
(ReferenceLatent ×2 + SamplerCustomAdvanced euler on Flux2Scheduler's σ), one DiT pass per step; Auto-Tune runs."""
import pytest
import torch

from tests.custom_nodes.vmdiff_test_nodes.scorers import ForcedScorer
from tests.support.reference_stand_ins import PassCounter, reference_image
from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
load_pack()
from vmdiff_cli import tiny_flux2, tiny_models  # noqa: E402

from vmdiff_pack.nodes.auto_tune import VMDiffAutoTune  # noqa: E402
from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise  # noqa: E402
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise  # noqa: E402
from vmdiff_pack.nodes.reference_encode import VMDiffReferenceEncode  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.prompt import fusion_prompt  # noqa: E402

W, H, STEPS, T_DEN = 64, 48, 4, 2
CORE_TOL = 1e-5  # our Euler against core's k-diffusion euler (float32 rounding)


def image(seed, h=48, w=64):
    return reference_image(seed, h, w)



@pytest.fixture(scope="module")
def klein():
    vae = tiny_flux2.tiny_flux2_vae(0)
    clip = tiny_models.tiny_clip_l(0)
    text = tiny_flux2.flux2_text_conditioning(clip.encode_from_tokens_scheduled(
        clip.tokenize(fusion_prompt("owl", "jar"))), 96)
    refs = [VMDiffReferenceEncode.execute(vae, image(s)).result[0] for s in (1, 2, 3)]
    return {"model": tiny_flux2.tiny_flux2(0), "vae": vae, "cond": text, "refs": refs}


def blend(k, r1, r2, model=None, **kw):
    return VMDiffBlendingNoise.execute(model or k["model"], r1, r2, k["cond"], seed=11, width=W, height=H,
                                       steps=STEPS, t_den_step=T_DEN, **kw).result


def mix(k, eps_b, r1, r2, model=None, **kw):
    return VMDiffMixingDenoise.execute(model or k["model"], eps_b, r1, r2, k["cond"], steps=STEPS, **kw).result[0][
        "samples"]


def core_sampling(k, eps_b, latents):
    """Core's FLUX.2 multi-reference sampling from ε_b: ReferenceLatent per image, BasicGuider, euler on
    Flux2Scheduler's σ (the grid core's FLUX.2 templates use)."""
    from comfy_extras.nodes_custom_sampler import BasicGuider, KSamplerSelect, SamplerCustomAdvanced
    from comfy_extras.nodes_edit_model import ReferenceLatent
    from comfy_extras.nodes_flux import Flux2Scheduler

    cond = k["cond"]
    for lat in latents:
        cond = ReferenceLatent.execute(cond, {"samples": lat}).result[0]
    guider = BasicGuider.execute(k["model"], cond).result[0]
    sigmas = Flux2Scheduler.execute(STEPS, W, H).result[0]
    latent = {"samples": torch.zeros_like(eps_b[0]["samples"])}
    return SamplerCustomAdvanced.execute(eps_b[1], guider, KSamplerSelect.execute("euler").result[0], sigmas,
                                         latent).result[0]["samples"]


def test_flux2_references_are_128_channel_latents_at_one_sixteenth(klein):
    lat = klein["refs"][0].latents[0]
    assert lat.shape == (1, 128, 3, 4)


def test_flux2_reductions(klein):
    r1, r2, r3 = klein["refs"]
    counter = PassCounter(klein["model"])
    eps_b = blend(klein, r1, r2, model=counter.model)
    assert eps_b[0]["samples"].shape == (1, 128, 3, 4) and counter.refs == [2] * (2 * (T_DEN + 1))
    counter.refs.clear()
    a0 = mix(klein, eps_b[0], r1, r2, model=counter.model, alpha=0.0)
    assert counter.refs == [2] * STEPS  # one DiT pass per step
    assert (a0 - mix(klein, eps_b[0], r1, None)).abs().max().item() == 0.0  # α = 0 ≡ reference 1 alone
    core_1 = core_sampling(klein, eps_b, [r1.latents[0]])
    print(f"FLUX.2 α = 0 vs core single-reference: {(a0 - core_1).abs().max().item():.2e}")
    assert (a0 - core_1).abs().max().item() <= CORE_TOL
    a05 = mix(klein, eps_b[0], r1, r2, alpha=0.5)
    core_12 = core_sampling(klein, eps_b, [r1.latents[0], r2.latents[0]])
    print(f"FLUX.2 α = 0.5 vs core two-reference: {(a05 - core_12).abs().max().item():.2e}")
    assert (a05 - core_12).abs().max().item() <= CORE_TOL
    assert (a05 - a0).abs().max().item() > 100 * CORE_TOL
    a1 = mix(klein, eps_b[0], r1, r2, alpha=1.0)
    assert (a1 - mix(klein, eps_b[0], r3, r2, alpha=1.0)).abs().max().item() == 0.0
    core_2 = core_sampling(klein, eps_b, [r2.latents[0]])
    gap = (a1 - core_2).abs().max().item()  # reference 2 at index 2·10 instead of 1·10
    print(f"FLUX.2 α = 1 vs reference 2 alone: {gap:.4f}; ref 1 alone vs ref 2 alone: "
          f"{(core_1 - core_2).abs().max().item():.4f}")
    assert gap > 0
    weighted = blend(klein, r1, r2, beta_1=1.0, beta_2=0.4)[0]["samples"]
    assert not torch.allclose(weighted, eps_b[0]["samples"], atol=1e-4) and torch.isfinite(weighted).all()


def test_auto_tune_runs_on_flux2_references(klein):
    scorer = ForcedScorer(lambda k: (0.37 * (k + 1)) % 0.7)
    r1, r2, _ = klein["refs"]
    counter = PassCounter(klein["model"])
    result = VMDiffAutoTune.execute(counter.model, r1, r2, klein["cond"], klein["vae"], scorer, seed=3, width=W,
                                    height=H, steps=STEPS, t_den_step=T_DEN, alpha_max_iter=3)
    image_out = result.result[0]
    assert image_out.shape == (1, H, W, 3) and torch.isfinite(image_out).all()
    assert scorer.calls >= 3 and set(counter.refs) == {2}
