"""VMDiff MagicMix in-process on two model families built from ComfyUI's real classes (tools/tiny_models): an SD1.5
UNet (ε-prediction, CFG with a negative) and Flux (rectified flow), checked against ComfyUI's stock samplers."""
import pytest
import torch

from tools.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
pack = load_pack()
from tools import tiny_models  # noqa: E402

import comfy.ldm.modules.attention  # noqa: E402
import comfy.ldm.modules.diffusionmodules.openaimodel  # noqa: E402
import comfy.model_base  # noqa: E402
import comfy.model_sampling  # noqa: E402
import comfy.ops  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402
import node_helpers  # noqa: E402
import nodes  # noqa: E402

from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError  # noqa: E402
from vmdiff_pack.nodes.magicmix import VMDiffMagicMix  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.magicmix import model_noise_scaling, reweight_patch, run_magicmix  # noqa: E402
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode  # noqa: E402

STEPS = 10


def image(seed, h=64, w=48):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def sd15():
    return {"model": tiny_models.tiny_sd15(seed=0), "vae": tiny_models.tiny_vae(seed=0, latent_channels=4),
            "content": tiny_models.tiny_sd15_conditioning(seed=1), "layout": tiny_models.tiny_sd15_conditioning(seed=2),
            "negative": tiny_models.tiny_sd15_conditioning(seed=3), "cfg": 5.0, "scheduler": "normal"}


@pytest.fixture(scope="module")
def flux():
    return {"model": tiny_models.tiny_flux(seed=0), "vae": tiny_models.tiny_vae(seed=0),
            "content": tiny_models.tiny_flux_conditioning(seed=1, text_tokens=4),
            "layout": tiny_models.tiny_flux_conditioning(seed=2, text_tokens=4),
            "negative": None, "cfg": 1.0, "scheduler": "simple"}


@pytest.fixture(params=["sd15", "flux"])
def family(request):
    return request.param, request.getfixturevalue(request.param)


def magicmix(f, **kw):
    model = kw.pop("model", f["model"])
    args = dict(seed=7, steps=STEPS, scheduler=f["scheduler"], k_max=0.6, k_min=0.3, nu=0.5, cfg=f["cfg"],
                negative=f["negative"], layout_image=image(0), vae=f["vae"])
    args.update(kw)
    return run_magicmix(model, f["content"], **args)


def stock(f, start, end=10000, positive=None, latent=None, add_noise="enable", leftover="disable", seed=7):
    """ComfyUI's own KSamplerAdvanced with euler on the same model, seed and grid."""
    latent = {"samples": f["vae"].encode(image(0))} if latent is None else latent
    negative = f["negative"] if f["negative"] is not None else f["content"]
    return nodes.KSamplerAdvanced().sample(f["model"], add_noise, seed, STEPS, f["cfg"], "euler", f["scheduler"],
                                           positive or f["content"], negative, latent, start, end, leftover)[0]


def layout_latent(f, seed=7):
    latent = f["vae"].encode(image(0))
    return f["model"].model.process_latent_in(latent), comfy.sample.prepare_noise(latent, seed)


class ForwardLog:
    """Every UNet/DiT forward, through ComfyUI's model_function_wrapper hook."""

    def __init__(self, model):
        self.model, self.calls = model.clone(), []
        self.model.set_model_unet_function_wrapper(self)

    def __call__(self, apply_model, args):
        kinds, context = list(args["cond_or_uncond"]), args["c"]["c_crossattn"]
        per_chunk = context.shape[0] // len(kinds)
        self.calls.append({"sigma": float(args["timestep"][0]), "batch": kinds,
                           "context": context[kinds.index(0) * per_chunk:][:per_chunk]})  # the conditional chunk
        return apply_model(args["input"], args["timestep"], **args["c"])


def test_tiny_sd15_is_comfyui_sd15():
    model = tiny_models.tiny_sd15(seed=0)
    assert isinstance(model.model, comfy.model_base.BaseModel)
    assert isinstance(model.model.diffusion_model, comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel)
    sampling = model.get_model_object("model_sampling")
    assert isinstance(sampling, comfy.model_sampling.EPS) and not isinstance(sampling, comfy.model_sampling.CONST)
    assert model.model.latent_format.scale_factor == pytest.approx(0.18215)
    a = tiny_models.tiny_sd15(seed=0).model.diffusion_model.state_dict()
    b = tiny_models.tiny_sd15(seed=1).model.diffusion_model.state_dict()
    assert all(torch.equal(v, model.model.diffusion_model.state_dict()[k]) for k, v in a.items())
    assert not all(torch.equal(v, b[k]) for k, v in a.items())


def test_layout_sequence_is_the_models_own_noise_scaling(family):
    name, f = family
    x0, eps = layout_latent(f)
    sampling = f["model"].get_model_object("model_sampling")
    scale = model_noise_scaling(f["model"])
    for sigma in (0.2, 0.7):
        expected = x0 + sigma * eps if name == "sd15" else (1 - sigma) * x0 + sigma * eps
        assert torch.allclose(scale(sigma, eps, x0), expected, atol=1e-5)
        assert torch.equal(scale(sigma, eps, x0), sampling.noise_scaling(torch.tensor(sigma), eps, x0))
    # ν = 0: the states x̂_{K_max} … x̂_{K_min} the node steps through are exactly x_k = noise_scaling(σ_k, ε, x0)
    states = {}
    out = magicmix(f, nu=0.0, on_step=lambda i, x_in, *rest: states.setdefault(i, x_in))
    i_max, i_min, sigmas = out.i_max, out.i_min, out.sigmas
    assert (i_max, i_min) == (4, 7)
    for i in range(i_max, i_min + 1):
        assert torch.allclose(states[i - i_max], sampling.noise_scaling(sigmas[i], eps, x0), atol=1e-6)


def test_nu_one_with_k_min_equal_k_max_is_stock_img2img_from_k(family):
    _, f = family
    ours = VMDiffMagicMix.execute(f["model"], f["content"], seed=7, steps=STEPS, scheduler=f["scheduler"], k_max=0.6,
                                  k_min=0.6, nu=1.0, cfg=f["cfg"], negative=f["negative"], layout_image=image(0),
                                  vae=f["vae"])
    reference = stock(f, start=4)["samples"]  # K = 0.6·10 = 6 → start at step 10 − 6
    assert torch.allclose(ours.result[0]["samples"], reference, rtol=0, atol=1e-6)
    assert "K_max = 6" in ours.ui.as_dict()["text"][0] and "6 model calls" in ours.ui.as_dict()["text"][0]
    # ν = 1 blends nothing: a layout window changes no value either
    assert torch.allclose(magicmix(f, nu=1.0).latent, reference, atol=1e-6)


def test_nu_zero_keeps_the_layout_path_through_k_min(family):
    _, f = family
    x0, eps = layout_latent(f)
    out = magicmix(f, nu=0.0)
    sampling = f["model"].get_model_object("model_sampling")
    assert torch.equal(out.x_kmin, sampling.noise_scaling(out.sigmas[out.i_min], eps, x0))
    # … so the result is stock img2img from K_min (10 − 3 = step 7), while ν = 0.5 is not
    reference = stock(f, start=7)["samples"]
    assert torch.allclose(out.latent, reference, atol=1e-6)
    assert not torch.allclose(magicmix(f, nu=0.5).latent, reference, atol=1e-3)


def test_steps_and_nfe(family):
    name, f = family
    log = ForwardLog(f["model"])
    out = magicmix(f, model=log.model, k_max=0.8, k_min=0.3)
    sigmas = out.sigmas
    assert out.nfe == len(log.calls) == STEPS - 2  # K_max = 8: steps 2 … 9
    assert [c["sigma"] for c in log.calls] == pytest.approx([float(s) for s in sigmas[2:STEPS]], rel=1e-6)
    assert all(sorted(c["batch"]) == ([0, 1] if name == "sd15" else [0]) for c in log.calls)  # CFG: cond + uncond


def test_text_text_layout_is_a_stock_generation_of_the_layout_prompt(family):
    name, f = family
    log = ForwardLog(f["model"])
    out = run_magicmix(log.model, f["content"], seed=7, steps=STEPS, scheduler=f["scheduler"], k_max=0.6,
                       k_min=0.3, nu=0.0, cfg=f["cfg"],
                       layout_conditioning=f["layout"], negative=f["negative"], width=48, height=64)
    assert out.nfe == len(log.calls) == 7 + 6  # σ_0 → K_min under the layout prompt, then K_max → 0
    layout_ctx, content_ctx = f["layout"][0][0], f["content"][0][0]
    assert all(torch.equal(c["context"], layout_ctx) for c in log.calls[:7])
    assert all(torch.equal(c["context"], content_ctx) for c in log.calls[7:])
    # ν = 0: stock txt2img of the layout prompt stopped at K_min, then stock denoising of it with the content
    empty = {"samples": torch.zeros(1, f["vae"].latent_channels, 8, 6)}
    at_k_min = stock(f, 0, 7, positive=f["layout"], latent=empty, leftover="enable")
    sampling = f["model"].get_model_object("model_sampling")  # KSampler un-scales a leftover state (Flux: /(1 − σ))
    leftover = sampling.inverse_noise_scaling(out.sigmas[7], out.x_kmin)
    assert torch.allclose(f["model"].model.process_latent_out(leftover), at_k_min["samples"], atol=1e-5)
    reference = stock(f, 7, latent=at_k_min, add_noise="disable")["samples"]
    assert torch.allclose(out.latent, reference, atol=1e-5)


def test_flux_redux_tokens_as_content(flux):
    clip_vision, style = tiny_models.tiny_clip_vision(seed=0), tiny_models.tiny_style_model(seed=0)
    tokens = VMDiffReduxEncode.execute(clip_vision, style, image(5)).result[0]
    guided = node_helpers.conditioning_set_values(flux["content"], {"guidance": 4.0})
    log = ForwardLog(flux["model"])
    with_tokens = run_magicmix(log.model, guided, seed=7, steps=STEPS, content_tokens=tokens, layout_image=image(0),
                               vae=flux["vae"]).latent
    assert {c["context"].shape[1] for c in log.calls} == {16}  # the Redux tokens replace the text tokens
    assert torch.equal(log.calls[0]["context"], tokens.tokens)
    text_only = run_magicmix(flux["model"], guided, seed=7, steps=STEPS, layout_image=image(0), vae=flux["vae"]).latent
    assert not torch.allclose(with_tokens, text_only, atol=1e-3)


def test_attention_reweighting_scales_the_tokens_attention_column():
    """On ComfyUI's CrossAttention: the attn2 patch on the value input == softmax(q·kᵀ/√d) with column j × s."""
    torch.manual_seed(0)
    attn = comfy.ldm.modules.attention.CrossAttention(16, context_dim=12, heads=2, dim_head=8,
                                                      operations=comfy.ops.disable_weight_init)
    tiny_models._fill_(attn, 0, "attn")
    x, context = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    _, k_in, v_in = reweight_patch([1, 4], -1.5, {"on": True})(x, context, context, {"cond_or_uncond": [0, 1]})
    assert torch.equal(k_in, context)  # keys untouched
    assert torch.equal(v_in[1], context[1])  # the unconditional chunk untouched
    q, k, v = attn.to_q(x[:1]), attn.to_k(context[:1]), attn.to_v(context[:1])
    split = lambda t: t.view(1, -1, 2, 8).transpose(1, 2)  # noqa: E731
    probs = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 8 ** 0.5, dim=-1)
    probs[..., [1, 4]] *= -1.5
    expected = attn.to_out((probs @ split(v)).transpose(1, 2).reshape(1, 5, 16))
    assert torch.allclose(attn(x[:1], context=context[:1], value=v_in[:1]), expected, atol=1e-5)
    off = reweight_patch([1], 2.0, {"on": False})(x, context, context, {"cond_or_uncond": [0]})
    assert off[2] is context


def test_attention_reweighting_on_sd15_and_refused_on_flux(sd15, flux):
    base = magicmix(sd15).latent
    assert torch.equal(magicmix(sd15, reweight_tokens="3", reweight_scale=1.0).latent, base)
    boosted = magicmix(sd15, reweight_tokens="2, 3", reweight_scale=2.0).latent
    removed = magicmix(sd15, reweight_tokens="2, 3", reweight_scale=-2.0).latent
    assert not torch.allclose(boosted, base, atol=1e-3) and not torch.allclose(removed, boosted, atol=1e-3)
    # text–text: only the content prompt is re-weighted, the layout prompt's generation is not
    kw = dict(layout_image=None, vae=None, layout_conditioning=sd15["layout"], width=48, height=64, nu=0.0)
    plain, weighted = magicmix(sd15, **kw), magicmix(sd15, reweight_tokens="2", reweight_scale=-2.0, **kw)
    assert torch.equal(weighted.x_kmin, plain.x_kmin)
    assert not torch.allclose(weighted.latent, plain.latent, atol=1e-3)
    with pytest.raises(VMDiffInputError, match="not supported"):
        magicmix(flux, reweight_tokens="1", reweight_scale=0.5)
    with pytest.raises(VMDiffInputError, match="position 80"):
        magicmix(sd15, reweight_tokens="80", reweight_scale=0.5)
    with pytest.raises(VMDiffInputError, match="comma-separated"):
        magicmix(sd15, reweight_tokens="dog", reweight_scale=0.5)


def test_bad_inputs_name_the_input(sd15, flux):
    with pytest.raises(VMDiffInputError, match="exactly one layout"):
        magicmix(sd15, layout_conditioning=sd15["layout"])
    with pytest.raises(VMDiffInputError, match="exactly one layout"):
        magicmix(sd15, layout_image=None)
    with pytest.raises(VMDiffInputError, match="vae"):
        magicmix(sd15, vae=None)
    with pytest.raises(VMDiffInputError, match="negative: cfg 5"):
        magicmix(sd15, negative=None)
    with pytest.raises(VMDiffInputError, match="k_min / k_max"):
        magicmix(sd15, k_max=0.3, k_min=0.6)
    assert "k_min 0.6" in VMDiffMagicMix.validate_inputs(k_max=0.3, k_min=0.6)
    tokens = VMDiffReduxEncode.execute(tiny_models.tiny_clip_vision(0), tiny_models.tiny_style_model(0),
                                       image(1)).result[0]
    with pytest.raises(VMDiffInputError, match="content_tokens: Redux tokens condition Flux only"):
        magicmix(sd15, content_tokens=tokens)


def test_pack_registers_magicmix():
    import asyncio

    ext = asyncio.run(pack.comfy_entrypoint())
    schemas = {n.define_schema().node_id: n.define_schema() for n in asyncio.run(ext.get_node_list())}
    schema = schemas["VMDiffMagicMix"]
    assert schema.category == "VMDiff" and schema.display_name == "VMDiff MagicMix"
    tooltip = next(i for i in schema.inputs if i.id == "reweight_tokens").tooltip
    assert "Flux" in tooltip and "not supported" in tooltip.lower()
