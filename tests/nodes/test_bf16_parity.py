"""bf16_state reproduces the reference's bf16 run as closely as the float32 path reproduces its float32 run: a
re-implementation of the reference's denoising loop (diffusers FluxPipeline: bf16 latents, t = bf16(1000·σ) through
the transformer's bf16 input, guidance bf16(γ)·1000 in bf16, Euler in float32) on the same tiny Flux weights."""
import pytest
import torch



from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
from vmdiff_pack.nodes.random_noise import VMDiffRandomNoise
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
from vmdiff_pack.vmdiff_comfy.stages.flow import phase_conditioning
from vmdiff_pack.vmdiff_comfy.stages.parity import bf16_guidance, bf16_timestep_sigma
from vmdiff_pack.vmdiff_ops import flow_sigma_grid, flux_mu, mix_tokens

BF16 = torch.bfloat16
SIZE, STEPS, GUIDANCE, ALPHA = 32, 8, 5.0, 0.5


@pytest.fixture(scope="module")
def parts(stand_ins):
    cv, style = stand_ins["clip_vision"], stand_ins["style"]
    images = [torch.rand(1, 48, 48, 3, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    z = [VMDiffReduxEncode.execute(cv, style, im).result[0] for im in images]
    eps = VMDiffRandomNoise.execute(seed=9, width=SIZE, height=SIZE).result[0]
    return {"model": stand_ins["model"], "z": z, "cond": stand_ins["cond"], "eps": eps}


def reference_denoise(p, bf16: bool) -> torch.Tensor:
    model = p["model"]
    sigmas = flow_sigma_grid(STEPS, flux_mu(SIZE, SIZE))
    sinp = mix_tokens(p["z"][0].tokens, p["z"][1].tokens, ALPHA, "official")
    (context, extras), = phase_conditioning(p["cond"], sinp, GUIDANCE, "redux_only", None)
    guidance = torch.tensor([GUIDANCE])
    x = p["eps"]["samples"].clone()
    if bf16:
        guidance = (guidance.to(BF16) * 1000).float() / 1000
        x = x.to(BF16)
    for i in range(STEPS):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        t = torch.tensor([1000 * sigma])
        if bf16:
            t = ((t.to(BF16) / 1000).to(BF16) * 1000).float()
        s = t / 1000
        x0 = model.model.apply_model(x.float(), s, c_crossattn=context, y=extras["pooled_output"], guidance=guidance)
        x = x.float() + (sigma_next - sigma) * ((x.float() - x0) / s)
        if bf16:
            x = x.to(BF16)
    return model.model.process_latent_out(x.float())


@pytest.mark.parametrize("bf16_state", [False, True])
def test_mixing_denoise_matches_the_reference_loop_in_its_precision(parts, bf16_state):
    ours = VMDiffMixingDenoise.execute(parts["model"], parts["eps"], *parts["z"], parts["cond"], alpha=ALPHA,
                                       guidance=GUIDANCE, steps=STEPS, bf16_state=bf16_state).result[0]["samples"]
    reference = reference_denoise(parts, bf16_state)
    assert torch.equal(ours, reference)
    other = reference_denoise(parts, not bf16_state)
    assert (ours - other).abs().max() > 1e-3  # the precisions differ measurably, so the equality above means something


def test_bf16_rounding_of_t_and_guidance():
    assert bf16_guidance(5.0) == pytest.approx(4.992, abs=1e-6)
    assert bf16_guidance(4.0) == pytest.approx(4.0)  # 4000 is a bf16 number
    assert bf16_timestep_sigma(0.6523) != 0.6523 and abs(bf16_timestep_sigma(0.6523) - 0.6523) < 0.004
    assert bf16_timestep_sigma(1.0) == 1.0
