"""The FLUX.2 stand-ins (vmdiff_cli/tiny_flux2), the σ grid per family (vmdiff_ops.schedule), the model
families and their defaults (vmdiff_comfy/stages/families.py) and the text_and_references context
(vmdiff_comfy/stages/reference_context.py), all on ComfyUI 0.8.0's real classes and core nodes."""
import time

import pytest
import torch

from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
load_pack()
from vmdiff_cli import tiny_flux2, tiny_models  # noqa: E402

import comfy.model_base  # noqa: E402
import comfy.model_detection  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402
import comfy.supported_models  # noqa: E402
from comfy_extras.nodes_edit_model import ReferenceLatent  # noqa: E402
from comfy_extras.nodes_flux import Flux2Scheduler, FluxGuidance  # noqa: E402

from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages import families  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.flow import CONTEXT_MODES, phase_conditioning  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.reference_context import reference_phase_conditioning  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.settings import SETTINGS, StageSettings  # noqa: E402
from vmdiff_pack.vmdiff_comfy.stages.prompt import fusion_prompt  # noqa: E402
from vmdiff_pack.vmdiff_ops import (family_sigma_grid, flow_sigma_grid, flux2_empirical_mu, flux2_sigma_grid,  # noqa: E402
                                    flux_mu, t_den_step_for_sigma)


def latent(seed, channels=128, h=4, w=4):
    return torch.randn((1, channels, h, w), generator=torch.Generator().manual_seed(seed))


def fusion_text(width=96):
    """The fusion prompt through a real tokenizer + encoder (the tiny CLIP-L), widened to FLUX.2's shape."""
    clip = tiny_models.tiny_clip_l(0)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(fusion_prompt("owl", "jar")))
    return tiny_flux2.flux2_text_conditioning(cond, width)


def sample(model, cond, x, sigmas, seed=0):
    """Core sampling (CFGGuider, euler) on a given σ grid, cfg 1 (one DiT pass per step)."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, cond, cond,
                                      x, seed=seed, disable_pbar=True)


def with_references(cond, *refs):
    for ref in refs:
        cond = ReferenceLatent.execute(cond, {"samples": ref}).result[0]
    return cond


# ------------------------------------------------------------------------------------------------------------------
# 1. the stand-ins

@pytest.mark.parametrize("variant", ["klein", "dev"])
def test_tiny_flux2_is_comfyui_flux2_with_every_flux2_switch(variant):
    model = tiny_flux2.tiny_flux2(0, variant=variant)
    assert isinstance(model, comfy.model_patcher.ModelPatcher)
    assert type(model.model) is comfy.model_base.Flux2
    assert type(model.model.model_config) is comfy.supported_models.Flux2
    assert model.model.latent_format.latent_channels == 128
    dit, params = model.model.diffusion_model, model.model.diffusion_model.params
    assert dit.patch_size == 1 and params.default_ref_method == "index" and params.ref_index_scale == 10.0
    assert params.global_modulation and params.mlp_silu_act and not params.qkv_bias and params.txt_ids_dims == [3]
    assert dit.vector_in is None  # FLUX.2 reads no pooled vector
    assert params.guidance_embed is (variant == "dev")
    again, other = tiny_flux2.tiny_flux2(0, variant=variant), tiny_flux2.tiny_flux2(1, variant=variant)
    sd, sd_again, sd_other = (m.model.diffusion_model.state_dict() for m in (model, again, other))
    assert all(torch.equal(sd[k], sd_again[k]) for k in sd)
    assert not all(torch.equal(sd[k], sd_other[k]) for k in sd if sd[k].ndim == 2)
    with pytest.raises(ValueError, match="variant"):
        tiny_flux2.tiny_flux2(0, variant="pro")


def test_tiny_flux2_samples_two_references_through_core_reference_latent():
    """Core's own two-reference sampling (ReferenceLatent ×2, Flux2Scheduler σ, euler) on the stand-in: finite, and
    each reference and their order change the result (the references reach the DiT by the index method)."""
    model = tiny_flux2.tiny_flux2(0)
    text = fusion_text()
    assert text[0][0].shape[-1] == 96 and text[0][1]["pooled_output"] is None
    r1, r2, x = latent(1), latent(2), torch.zeros(1, 128, 4, 4)
    sigmas = Flux2Scheduler.execute(4, 64, 64).result[0]
    both = sample(model, with_references(text, r1, r2), x, sigmas)
    assert both.shape == (1, 128, 4, 4) and torch.isfinite(both).all()
    swapped = sample(model, with_references(text, r2, r1), x, sigmas)
    alone = sample(model, with_references(text, r1), x, sigmas)
    none = sample(model, text, x, sigmas)
    for other in (swapped, alone, none):
        assert (both - other).abs().max() > 1e-4


def test_tiny_flux2_vae_is_built_by_comfyui_as_flux2s_vae():
    start = time.perf_counter()
    vae = tiny_flux2.tiny_flux2_vae(0)
    built = time.perf_counter() - start
    assert vae.latent_channels == 128 and vae.downscale_ratio == 16 and vae.upscale_ratio == 16
    assert vae.first_stage_model.bn is not None  # the 2×2 patchify + batch norm of FLUX.2's latent
    image = torch.rand(1, 32, 48, 3, generator=torch.Generator().manual_seed(0))
    z = vae.encode(image)
    assert z.shape == (1, 128, 2, 3) and torch.isfinite(z).all()
    out = vae.decode(z)
    assert out.shape == (1, 32, 48, 3) and torch.isfinite(out).all() and out.std() > 1e-3
    print(f"\ntiny FLUX.2 VAE (full layout, {sum(p.numel() for p in vae.first_stage_model.parameters()) / 1e6:.1f} M "
          f"params) built in {built:.1f} s")


def test_flux2_text_conditioning_has_flux2s_shape():
    cond = fusion_text(96)
    tokens, extras = cond[0]
    assert tokens.shape[-1] == 96 and torch.equal(tokens[..., 32:], torch.zeros_like(tokens[..., 32:]))
    assert extras["pooled_output"] is None
    with pytest.raises(ValueError, match="wide"):
        tiny_flux2.flux2_text_conditioning(cond, 16)


def test_real_flux2_loader_file_is_detected_but_too_large_for_ci():
    """The real loader path, measured: the smallest state dict ComfyUI 0.8.0's detector takes for FLUX.2 (keys and
    shapes on the meta device) is detected as supported_models.Flux2, and it is 1.66 B parameters (3.1 GiB in
    bf16), because 0.8.0 forces 48 heads × 128: too large to write and load in CI on 2 cores."""
    found = tiny_flux2.flux2_loader_file_size()
    config = comfy.model_detection.detect_unet_config(found["meta_state_dict"], "")
    assert config["image_model"] == "flux2" and config["hidden_size"] == 6144 and config["num_heads"] == 48
    model_config = comfy.model_detection.model_config_from_unet_config(config, found["meta_state_dict"])
    assert type(model_config) is comfy.supported_models.Flux2
    print(f"\nsmallest FLUX.2 file 0.8.0 loads: {found['params'] / 1e9:.2f} B params, "
          f"{found['bytes'] / 2**30:.2f} GiB bf16")
    assert found["params"] > 1.5e9 and found["bytes"] > 3 * 2**30


# ------------------------------------------------------------------------------------------------------------------
# 2. the σ grid per family

@pytest.mark.parametrize("steps,width,height", [(4, 1024, 1024), (20, 512, 512), (28, 1024, 768), (50, 2048, 2048),
                                                (1, 64, 64), (8, 1000, 600), (20, 1360, 768)])
def test_flux2_sigma_grid_equals_core_flux2scheduler(steps, width, height):
    core = Flux2Scheduler.execute(steps, width, height).result[0]
    ours = flux2_sigma_grid(steps, width, height)
    assert ours.dtype == core.dtype and torch.equal(ours, core)
    # σ_0 is 1 up to float32 rounding (core's too: e.g. 0.99999994 at 1 step, 64²), σ_T exactly 0
    assert float(ours[0]) == pytest.approx(1.0, abs=1e-7) and float(ours[-1]) == 0.0
    assert bool((ours[1:] < ours[:-1]).all())
    assert torch.equal(family_sigma_grid("flux2", steps, width, height), core)


def test_flux2_mu_has_the_long_sequence_branch():
    assert flux2_empirical_mu(4301, 4) == flux2_empirical_mu(4301, 50)  # > 4300 tokens: μ of the 200-step fit only
    assert flux2_empirical_mu(4096, 4) != flux2_empirical_mu(4096, 50)


def test_flux1_family_grid_is_the_redux_stages_grid_bit_for_bit():
    for steps, w, h in [(20, 512, 512), (8, 32, 48), (28, 1024, 1024)]:
        assert torch.equal(family_sigma_grid("flux1", steps, w, h), flow_sigma_grid(steps, flux_mu(w, h)))
    assert not torch.equal(family_sigma_grid("flux1", 20, 512, 512), family_sigma_grid("flux2", 20, 512, 512))
    with pytest.raises(ValueError, match="family"):
        family_sigma_grid("sd15", 20, 512, 512)
    with pytest.raises(ValueError, match="steps"):
        flux2_sigma_grid(0, 512, 512)


def test_model_family_and_grid_come_from_the_model():
    flux1, klein, dev = tiny_models.tiny_flux(0), tiny_flux2.tiny_flux2(0), tiny_flux2.tiny_flux2(0, "dev")
    assert [families.model_family(m) for m in (flux1, klein, dev)] == ["flux1", "flux2", "flux2"]
    assert torch.equal(families.sigma_grid_for_model(flux1, 20, 512, 512), flow_sigma_grid(20, flux_mu(512, 512)))
    assert torch.equal(families.sigma_grid_for_model(klein, 4, 512, 512), Flux2Scheduler.execute(4, 512, 512).result[0])
    assert [families.default_variant(m) for m in (flux1, klein, dev)] == ["flux1_dev_redux", "flux2_klein", "flux2_dev"]
    assert [families.latent_scale_for_model(m) for m in (flux1, klein)] == [8, 16]
    with pytest.raises(VMDiffInputError, match="model: .*FLUX.2"):
        families.model_family(tiny_models.tiny_sd15(0))
    with pytest.raises(VMDiffInputError, match="steps"):
        families.sigma_grid_for_model(klein, 0, 512, 512)


# ------------------------------------------------------------------------------------------------------------------
# 3. per-family defaults

def test_every_family_default_is_a_valid_stage_setting():
    for name, d in families.FAMILY_DEFAULTS.items():
        values = d.stage_values()
        settings = StageSettings.from_inputs(values)
        assert settings.problems() == [], name
        assert d.family in ("flux1", "flux2") and d.latent_scale in (8, 16)
        assert values["context"] in CONTEXT_MODES


def test_family_defaults_follow_the_paper_and_the_model_cards():
    paper = families.family_defaults("flux1_dev_redux")
    assert (paper.steps, paper.t_den_step, paper.guidance_denoise, paper.guidance) == (20, 10, 5.0, 4.0)
    ours = StageSettings()  # the FLUX.1 + Redux stages' own defaults are unchanged and equal the table's row
    assert {k: getattr(ours, k) for k in paper.stage_values()} == paper.stage_values()
    klein = families.family_defaults("flux2_klein")
    assert (klein.steps, klein.guidance, klein.cfg, klein.passes_per_step) == (4, None, 1.0, 1)
    base = families.family_defaults("flux2_klein_base")
    assert base.steps == 20 and base.cfg > 1 and base.passes_per_step == 2
    assert families.family_defaults("flux1_kontext").guidance == 2.5
    with pytest.raises(VMDiffInputError, match="model_variant"):
        families.family_defaults("flux3")


def test_t_den_keeps_the_papers_noise_level_per_family():
    """t_den is chosen as a noise level: the paper's σ_den = 0.6525 is step 10 of FLUX.1's 20-step grid at 512²; on
    FLUX.2's grid that noise level is step 16, the table's t_den for the 20-step FLUX.2 variants. The distilled 4-step
    [klein] grid cannot reach it before its last two steps: its t_den is the last allowed step (2 = steps − 2)."""
    assert t_den_step_for_sigma(family_sigma_grid("flux1", 20, 512, 512)) == 10
    for name, d in families.FAMILY_DEFAULTS.items():
        expected = t_den_step_for_sigma(family_sigma_grid(d.family, d.steps, 512, 512))
        assert d.t_den_step == expected, name
    assert t_den_step_for_sigma(family_sigma_grid("flux2", 20, 512, 512)) == 16
    assert families.family_defaults("flux2_klein").t_den_step == 2
    with pytest.raises(ValueError, match="steps"):
        t_den_step_for_sigma(torch.tensor([1.0, 0.0]))


# ------------------------------------------------------------------------------------------------------------------
# 4. the text_and_references context

def test_text_and_references_is_a_declared_context_mode():
    assert "text_and_references" in SETTINGS["context"].options
    assert SETTINGS["context"].default == "redux_only"  # the FLUX.1 + Redux default is unchanged
    cond = tiny_models.tiny_flux_conditioning(0, text_tokens=2)
    with pytest.raises(VMDiffInputError, match="context: text_and_references is for reference images"):
        phase_conditioning(cond, torch.zeros(1, 3, 64), 4.0, "text_and_references", 32)


def test_reference_conditioning_on_flux2_klein():
    model = tiny_flux2.tiny_flux2(0)
    r1, r2 = latent(1), latent(2)
    cond = reference_phase_conditioning(fusion_text(), [r1, r2], 4.0, "text_and_references", model,
                                        extras={"marker": 1})
    tokens, extras = cond[0]
    assert tokens.shape[-1] == 96 and extras["reference_latents"] == [r1, r2]
    assert "guidance" not in extras and extras["pooled_output"] is None and extras["marker"] == 1


def test_reference_conditioning_samples_exactly_as_core_two_reference_sampling():
    """The builder is core's plain two-reference conditioning: sampling with it equals sampling with ReferenceLatent
    ×2 (+ FluxGuidance where the model embeds guidance), bit for bit, on FLUX.2 [klein], FLUX.2 [dev] and a
    Kontext-shaped FLUX.1 (pooled CLIP-L kept)."""
    cases = [(tiny_flux2.tiny_flux2(0), fusion_text(), 128, "flux2"),
             (tiny_flux2.tiny_flux2(0, "dev"), fusion_text(), 128, "flux2"),
             (tiny_models.tiny_flux(0), tiny_models.tiny_flux_conditioning(0, text_tokens=3), 16, "flux1")]
    for model, text, channels, family in cases:
        r1, r2 = latent(1, channels), latent(2, channels)
        x = torch.zeros(1, channels, 4, 4)
        sigmas = family_sigma_grid(family, 4, 64, 64)
        core = FluxGuidance.execute(with_references(text, r1, r2), 3.0).result[0]
        ours = reference_phase_conditioning(text, [r1, r2], 3.0, "text_and_references", model)
        assert torch.equal(sample(model, ours, x, sigmas), sample(model, core, x, sigmas))
        other = reference_phase_conditioning(text, [r2, r1], 3.0, "text_and_references", model)
        assert not torch.equal(sample(model, other, x, sigmas), sample(model, core, x, sigmas))


def test_reference_conditioning_errors_name_the_input_and_the_fix():
    klein, flux1 = tiny_flux2.tiny_flux2(0), tiny_models.tiny_flux(0)
    text, r = fusion_text(), [latent(1)]
    with pytest.raises(VMDiffInputError, match="context: redux_only is for Redux tokens.*text_and_references"):
        reference_phase_conditioning(text, r, None, "redux_only", klein)
    with pytest.raises(VMDiffInputError, match="context: unknown mode"):
        reference_phase_conditioning(text, r, None, "images", klein)
    with pytest.raises(VMDiffInputError, match="conditioning: its text tokens are 64 wide .* takes 96"):
        reference_phase_conditioning([[text[0][0][..., :64], {}]], r, None, "text_and_references", klein)
    with pytest.raises(VMDiffInputError, match="references: no reference"):
        reference_phase_conditioning(text, [], None, "text_and_references", klein)
    with pytest.raises(VMDiffInputError, match="references: reference 2 .* 128 channels"):
        reference_phase_conditioning(text, [latent(1), latent(2, 16)], None, "text_and_references", klein)
    no_pooled = [[torch.zeros(1, 3, 64), {}]]
    with pytest.raises(VMDiffInputError, match="pooled CLIP-L vector"):
        reference_phase_conditioning(no_pooled, [latent(1, 16)], 2.5, "text_and_references", flux1)
    kontext = reference_phase_conditioning(tiny_models.tiny_flux_conditioning(0, text_tokens=3), [latent(1, 16)], 2.5,
                                           "text_and_references", flux1)
    assert kontext[0][1]["guidance"] == 2.5 and kontext[0][1]["pooled_output"].shape[-1] == 32
