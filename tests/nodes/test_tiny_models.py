"""vmdiff_cli/tiny_models: the random-weight stand-ins run through ComfyUI's real code paths and loaders."""
import copy
import importlib.util
import os
import time

import pytest
import torch

from vmdiff_cli.comfy_env import comfy_path
from vmdiff_cli import tiny_models
from vmdiff_cli.comfy_server import write_extra_model_paths_yaml


import comfy.clip_model
import comfy.clip_vision
import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.taesd.taesd
import folder_paths
import node_helpers
import nodes


def _images(seed, n=1, size=64):
    return torch.rand((n, size, size, 3), generator=torch.Generator().manual_seed(seed))


def _assert_useful(t):
    assert torch.isfinite(t).all()
    assert t.float().std() > 1e-3


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _sample(model, cond, latent, steps=2, seed=0):
    """A stock-euler ``sample_custom`` run (CFGGuider, model management, process_latent_in/out)."""
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed))
    return comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas,
                                      cond, cond, latent, seed=seed, disable_pbar=True)


# ------------------------------------------------------------------------------------------------
# A. in-process stand-ins

def test_tiny_flux_is_comfyui_flux_and_deterministic():
    model = tiny_models.tiny_flux(seed=0)
    assert isinstance(model, comfy.model_patcher.ModelPatcher)
    assert isinstance(model.model, comfy.model_base.Flux)
    sampling = model.get_model_object("model_sampling")
    assert isinstance(sampling, comfy.model_sampling.ModelSamplingFlux)
    assert isinstance(sampling, comfy.model_sampling.CONST)
    assert isinstance(model.model.latent_format, comfy.latent_formats.Flux)
    assert model.model_dtype() == torch.float32
    dit = model.model.diffusion_model
    assert (dit.hidden_size, dit.num_heads, dit.params.guidance_embed) == (64, 2, True)
    assert dit.txt_in.weight.shape == (64, 64) and dit.vector_in.in_layer.weight.shape == (64, 32)
    assert all(torch.isfinite(p).all() for p in dit.parameters())
    assert _same_weights(dit, tiny_models.tiny_flux(seed=0).model.diffusion_model)
    assert not _same_weights(dit, tiny_models.tiny_flux(seed=1).model.diffusion_model)
    wide = tiny_models.tiny_flux(context_dim=48, vec_dim=24).model.diffusion_model
    assert wide.txt_in.weight.shape == (64, 48) and wide.vector_in.in_layer.weight.shape == (64, 24)


def test_tiny_flux_conditioning():
    cond = tiny_models.tiny_flux_conditioning(seed=0, text_tokens=3)
    assert cond[0][0].shape == (1, 3, 64) and cond[0][1]["pooled_output"].shape == (1, 32)
    assert torch.equal(cond[0][0], tiny_models.tiny_flux_conditioning(seed=0, text_tokens=3)[0][0])
    assert tiny_models.tiny_flux_conditioning(text_tokens=0, vec_dim=8, context_dim=16)[0][0].shape == (1, 0, 16)


def test_tiny_clip_l_encodes_with_comfyui_tokenizer():
    clip = tiny_models.tiny_clip_l(seed=0)
    assert isinstance(clip, comfy.sd.CLIP)
    out = clip.encode_from_tokens(clip.tokenize("A photo of owl creatively fused with jar."),
                                  return_pooled="unprojected", return_dict=True)
    assert out["cond"].shape == (1, 77, 32) and out["pooled_output"].shape == (1, 32)
    _assert_useful(out["pooled_output"])
    other = clip.encode_from_tokens(clip.tokenize("A photo of cat creatively fused with teapot."),
                                    return_pooled="unprojected", return_dict=True)
    assert not torch.equal(out["pooled_output"], other["pooled_output"])


def test_tiny_flux_samples_with_stock_euler():
    model = tiny_models.tiny_flux(seed=0)
    latent = torch.zeros(1, 16, 16, 16)
    cond = tiny_models.tiny_flux_conditioning(seed=0, text_tokens=4)
    out = _sample(model, cond, latent)
    assert out.shape == latent.shape
    _assert_useful(out)
    assert torch.equal(out, _sample(tiny_models.tiny_flux(seed=0), cond, latent))  # deterministic
    other_context = tiny_models.tiny_flux_conditioning(seed=1, text_tokens=4)
    assert (out - _sample(model, other_context, latent)).abs().max() > 1e-2  # context tokens matter
    guided = node_helpers.conditioning_set_values(cond, {"guidance": 8.0})
    assert (out - _sample(model, guided, latent)).abs().max() > 1e-2  # guidance embedding matters


def test_tiny_redux_chain_feeds_tiny_flux():
    """CLIPVisionEncode -> StyleModelApply -> sampling, all stand-ins; text_tokens=0 gives Redux-only context
    (ComfyUI's Flux cannot run on an empty context by itself: the DiT fails to reshape 0 text tokens)."""
    clip_vision_output = tiny_models.tiny_clip_vision(seed=0).encode_image(_images(0), crop=False)
    cond = tiny_models.tiny_flux_conditioning(seed=0, text_tokens=0)
    (styled,) = nodes.StyleModelApply().apply_stylemodel(cond, tiny_models.tiny_style_model(seed=0),
                                                         clip_vision_output, 1.0, "multiply")
    assert styled[0][0].shape == (1, 16, 64)
    _assert_useful(_sample(tiny_models.tiny_flux(seed=0), styled, torch.zeros(1, 16, 8, 8)))


def test_tiny_clip_vision_and_style_model():
    clip_vision = tiny_models.tiny_clip_vision(seed=0)
    assert isinstance(clip_vision, comfy.clip_vision.ClipVisionModel) and clip_vision.image_size == 56
    images = _images(0, n=2)
    out = clip_vision.encode_image(images, crop=False)
    assert out.last_hidden_state.shape == (2, 16, 32)
    _assert_useful(out.last_hidden_state)
    again = tiny_models.tiny_clip_vision(seed=0).encode_image(images, crop=False)
    assert torch.equal(out.last_hidden_state, again.last_hidden_state)
    assert not torch.equal(out.last_hidden_state[0], out.last_hidden_state[1])  # depends on the image

    style = tiny_models.tiny_style_model(seed=0)
    assert isinstance(style, comfy.sd.StyleModel)
    tokens = style.get_cond(out)
    assert tokens.shape == (2, 16, 64)
    _assert_useful(tokens)
    assert torch.equal(tokens, tiny_models.tiny_style_model(seed=0).get_cond(out))
    assert not torch.equal(tokens, tiny_models.tiny_style_model(seed=1).get_cond(out))
    assert tiny_models.tiny_style_model(context_dim=48).get_cond(out).shape == (2, 16, 48)


def test_tiny_vae_decode_encode():
    vae = tiny_models.tiny_vae(seed=0)
    assert isinstance(vae.first_stage_model, comfy.taesd.taesd.TAESD) and vae.latent_channels == 16
    assert vae.first_stage_model.vae_scale.item() == pytest.approx(0.3611)
    latent = torch.randn((1, 16, 8, 8), generator=torch.Generator().manual_seed(0))
    image = vae.decode(latent)
    assert image.shape == (1, 64, 64, 3) and image.min() >= 0 and image.max() <= 1
    _assert_useful(image)
    assert torch.equal(image, tiny_models.tiny_vae(seed=0).decode(latent))
    encoded = vae.encode(_images(0))
    assert encoded.shape == (1, 16, 8, 8)
    _assert_useful(encoded)


def test_extra_model_paths_yaml_is_read_by_comfyui(tmp_path, monkeypatch):
    custom_nodes = tmp_path / "custom_nodes"
    yaml_path = write_extra_model_paths_yaml(tmp_path / "models", tmp_path / "extra.yaml", [custom_nodes])
    # ComfyUI's own reader (loaded by path: nodes.py puts comfy/ first on sys.path, shadowing the `utils` package)
    spec = importlib.util.spec_from_file_location("_comfy_extra_config", comfy_path() / "utils" / "extra_config.py")
    extra_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extra_config)
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    extra_config.load_extra_path_config(str(yaml_path))
    for kind in tiny_models.REAL_LOADER_FILES:
        assert folder_paths.get_folder_paths(kind)[0] == str(tmp_path / "models" / kind)
    assert str(custom_nodes) in folder_paths.get_folder_paths("custom_nodes")


# ------------------------------------------------------------------------------------------------
# B. real-loader files, loaded by ComfyUI's own loader nodes

@pytest.fixture(scope="session")
def real_models():
    start = time.perf_counter()
    paths = tiny_models.write_real_loader_models(tiny_models.default_tiny_models_dir())
    print(f"\n[tiny_models] real-loader files ready in {time.perf_counter() - start:.1f} s")
    for kind, path in paths.items():
        folder_paths.add_model_folder_path(kind, str(path.parent), is_default=True)
    return paths


def _file_keys(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return set(f.keys())


@pytest.fixture
def free_models():
    yield
    comfy.model_management.unload_all_models()
    comfy.model_management.soft_empty_cache()


@pytest.mark.slow
def test_real_loader_cache_is_reused(real_models):
    models_dir = tiny_models.default_tiny_models_dir()
    assert (models_dir / f".recipe-{tiny_models.recipe_hash()}").is_file()
    mtimes = {k: os.stat(p).st_mtime_ns for k, p in real_models.items()}
    assert tiny_models.write_real_loader_models(models_dir) == real_models
    assert mtimes == {k: os.stat(p).st_mtime_ns for k, p in real_models.items()}
    for kind, path in real_models.items():
        assert path.name == tiny_models.REAL_LOADER_FILES[kind] and path.parent.name == kind


@pytest.mark.slow
def test_unet_loader_flux(real_models, free_models):
    (model,) = nodes.UNETLoader().load_unet(tiny_models.REAL_LOADER_FILES["diffusion_models"], "default")
    assert isinstance(model.model, comfy.model_base.Flux)
    assert isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.ModelSamplingFlux)
    dit = model.model.diffusion_model
    assert (dit.hidden_size, dit.num_heads, len(dit.double_blocks), len(dit.single_blocks)) == (3072, 24, 1, 0)
    assert set(dit.state_dict()) == _file_keys(real_models["diffusion_models"])  # every key shipped

    def cond(seed):
        g = torch.Generator().manual_seed(seed)
        return [[torch.randn((1, 4, 4096), generator=g), {"pooled_output": torch.randn((1, 768), generator=g)}]]

    latent = torch.zeros(1, 16, 8, 8)
    out = _sample(model, cond(0), latent, steps=1)
    _assert_useful(out)
    assert (out - _sample(model, cond(1), latent, steps=1)).abs().max() > 1e-2


@pytest.mark.slow
def test_vae_loader(real_models, free_models):
    (vae,) = nodes.VAELoader().load_vae(tiny_models.REAL_LOADER_FILES["vae"])
    assert isinstance(vae.first_stage_model, comfy.taesd.taesd.TAESD) and vae.latent_channels == 16
    image = vae.decode(torch.randn((1, 16, 8, 8), generator=torch.Generator().manual_seed(0)))
    assert image.shape == (1, 64, 64, 3)
    _assert_useful(image)
    _assert_useful(vae.encode(image))


@pytest.mark.slow
def test_clip_vision_and_style_model_loaders(real_models, free_models):
    (clip_vision,) = nodes.CLIPVisionLoader().load_clip(tiny_models.REAL_LOADER_FILES["clip_vision"])
    assert isinstance(clip_vision, comfy.clip_vision.ClipVisionModel) and clip_vision.image_size == 384
    vision = clip_vision.model.vision_model
    assert len(vision.encoder.layers) == 27
    assert set(clip_vision.model.state_dict()) == _file_keys(real_models["clip_vision"])
    # A full encode_image (729 tokens x 27 layers) takes 25-40 s on 2 cores; run the real stack on 16 tokens.
    pixels = comfy.clip_model.clip_preprocess(_images(0, size=384), size=384, mean=clip_vision.image_mean,
                                              std=clip_vision.image_std, crop=False)
    with torch.no_grad():
        x = vision.embeddings(pixels)[:, :16]
        hidden = vision.post_layernorm(vision.encoder(x)[0])
    _assert_useful(hidden)

    (style,) = nodes.StyleModelLoader().load_style_model(tiny_models.REAL_LOADER_FILES["style_models"])
    out = comfy.clip_vision.Output()
    out["last_hidden_state"] = hidden.float()
    tokens = style.get_cond(out)
    assert tokens.shape == (1, 16, 4096)
    _assert_useful(tokens)


@pytest.mark.slow
def test_clip_loader_clip_l(real_models, free_models):
    (clip,) = nodes.CLIPLoader().load_clip(tiny_models.REAL_LOADER_FILES["text_encoders"], "stable_diffusion")

    def pooled(text):
        out = clip.encode_from_tokens(clip.tokenize(text), return_pooled="unprojected", return_dict=True)
        return out["pooled_output"]

    owl = pooled("A photo of owl creatively fused with jar.")
    assert owl.shape == (1, 768)
    _assert_useful(owl)
    assert torch.equal(owl, pooled("A photo of owl creatively fused with jar."))
    assert (owl - pooled("A photo of cat creatively fused with teapot.")).abs().max() > 1e-2
