"""α and β on reference images through a real ComfyUI server (main.py --cpu) on the real-loader stand-ins: the
tiny FLUX.1-architecture file as FLUX.1 Kontext (UNETLoader), CLIP-L padded to Flux's text width as its text
encoder, the tiny VAE; the references made by VMDiff Reference Encode. One prompt runs every branch, so each
reduction compares outputs of the same server run:

* α = 0 (both references) vs VMDiff with reference 1 alone: identical PNGs; vs core's own sampling with reference 1
  (VAEEncode → ReferenceLatent → BasicGuider → SamplerCustomAdvanced, euler, ModelSamplingFlux + BasicScheduler
  simple on the same ε_b): within 2/255 per pixel (σ grids equal to ~1e-7, our Euler vs k-diffusion's);
* α = 1: reference 1's picture has no influence (identical PNGs when it is replaced);
* α = 0.5, β = (1, 1) vs core's two-reference sampling: within 2/255;
* NFE: Blending Noise and Mixing Denoise report the same pass counts as on Redux."""
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
W, H, STEPS, T_DEN = 64, 48, 4, 1
PROMPT = "A photo of red disc creatively fused with blue mug."
CORE_LEVELS = 2.0  # 8-bit levels between our Euler and core's euler (latent max |Δ| ≈ 1e-6 in-process)


def graph(images: list[str], family: str = "kontext") -> dict:
    flux2 = family == "flux2"
    g = {
        "unet": ("VMDiffTestTinyFlux2", {"seed": 0, "variant": "klein", "context_dim": 768}) if flux2 else
                ("UNETLoader", {"unet_name": "flux1-krea-dev.safetensors", "weight_dtype": "default"}),
        "clip": ("CLIPLoader", {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"}),
        "text_l": ("CLIPTextEncode", {"clip": ["clip", 0], "text": PROMPT}),
        "text": ("VMDiffTestFlux2Text", {"conditioning": ["text_l", 0], "width": 768}) if flux2 else
                ("VMDiffTestFluxText", {"conditioning": ["text_l", 0], "width": 4096}),
        "vae": ("VMDiffTestTinyFlux2VAE", {"seed": 0}) if flux2 else ("VAELoader", {"vae_name": "ae.safetensors"}),
        "blend": ("VMDiffBlendingNoise", {"model": ["unet", 0], "tokens_1": ["ref_1", 0], "tokens_2": ["ref_2", 0],
                                          "conditioning": ["text", 0], "seed": 5, "width": W, "height": H,
                                          "steps": STEPS, "t_den_step": T_DEN, "beta_1": 1.0, "beta_2": 1.0}),
        "blend_beta": ("VMDiffBlendingNoise", {"model": ["unet", 0], "tokens_1": ["ref_1", 0],
                                               "tokens_2": ["ref_2", 0], "conditioning": ["text", 0], "seed": 5,
                                               "width": W, "height": H, "steps": STEPS, "t_den_step": T_DEN,
                                               "beta_1": 1.0, "beta_2": 0.5}),
        "sampling": ("ModelSamplingFlux", {"model": ["unet", 0], "max_shift": 1.15, "base_shift": 0.5, "width": W,
                                           "height": H}),
        "sigmas": ("Flux2Scheduler", {"steps": STEPS, "width": W, "height": H}) if flux2 else
                  ("BasicScheduler", {"model": ["sampling", 0], "scheduler": "simple", "steps": STEPS,
                                      "denoise": 1.0}),
        "euler": ("KSamplerSelect", {"sampler_name": "euler"}),
        "guided": ("FluxGuidance", {"conditioning": ["text", 0], "guidance": 4.0}),
        "empty": ("EmptyFlux2LatentImage" if flux2 else "EmptySD3LatentImage", {"width": W, "height": H,
                                                                                "batch_size": 1}),
    }
    for k, name in enumerate(images, start=1):
        g[f"image_{k}"] = ("LoadImage", {"image": name})
        g[f"ref_{k}"] = ("VMDiffReferenceEncode", {"vae": ["vae", 0], "image": [f"image_{k}", 0]})
        g[f"latent_{k}"] = ("VAEEncode", {"pixels": [f"image_{k}", 0], "vae": ["vae", 0]})
    outputs = {  # name -> Mixing Denoise inputs, or the core reference chain
        "a0": dict(tokens_1=["ref_1", 0], tokens_2=["ref_2", 0], alpha=0.0),
        "r1": dict(tokens_1=["ref_1", 0], alpha=0.5),
        "a05": dict(tokens_1=["ref_1", 0], tokens_2=["ref_2", 0], alpha=0.5),
        "a1": dict(tokens_1=["ref_1", 0], tokens_2=["ref_2", 0], alpha=1.0),
        "a1_other": dict(tokens_1=["ref_3", 0], tokens_2=["ref_2", 0], alpha=1.0),
        "a03_beta": dict(tokens_1=["ref_1", 0], tokens_2=["ref_2", 0], alpha=0.3, eps_b=["blend_beta", 0]),
        "core_1": [1], "core_12": [1, 2], "core_2": [2],
    }
    for name, spec in outputs.items():
        if isinstance(spec, dict):
            g[f"mix_{name}"] = ("VMDiffMixingDenoise", {"model": ["unet", 0], "eps_b": ["blend", 0],
                                                        "conditioning": ["text", 0], "steps": STEPS, **spec})
            latent = [f"mix_{name}", 0]
        else:
            cond = ["guided", 0]
            for k in spec:
                g[f"{name}_ref{k}"] = ("ReferenceLatent", {"conditioning": cond, "latent": [f"latent_{k}", 0]})
                cond = [f"{name}_ref{k}", 0]
            g[f"{name}_guider"] = ("BasicGuider", {"model": ["unet", 0], "conditioning": cond})
            g[f"{name}_sample"] = ("SamplerCustomAdvanced", {"noise": ["blend", 1], "guider": [f"{name}_guider", 0],
                                                              "sampler": ["euler", 0], "sigmas": ["sigmas", 0],
                                                              "latent_image": ["empty", 0]})
            latent = [f"{name}_sample", 0]
        g[f"decode_{name}"] = ("VAEDecode", {"samples": latent, "vae": ["vae", 0]})
        g[f"save_{name}"] = ("SaveImage", {"images": [f"decode_{name}", 0],
                                           "filename_prefix": f"vmdiff_ref_{family}_{name}"})
    if flux2:
        del g["sampling"]
    return {k: {"class_type": c, "inputs": i} for k, (c, i) in g.items()}


def with_defaults(prompt: dict, info: dict) -> dict:
    """Every required widget a node of ``prompt`` leaves out, at its default (as the frontend would save it)."""
    for node in prompt.values():
        for name, spec in info[node["class_type"]]["input"].get("required", {}).items():
            if name not in node["inputs"]:
                options = spec[1] if len(spec) > 1 else {}
                node["inputs"][name] = options["default"] if "default" in options else (
                    spec[0][0] if isinstance(spec[0], list) else options.get("options", [None])[0])
    return prompt


def pixels(server, entry, family: str) -> dict:
    out = {}
    for path in server.output_images(entry):
        name = path.name.split(f"vmdiff_ref_{family}_")[1].rsplit("_", 2)[0]
        out[name] = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return out


@pytest.mark.parametrize("family", ["kontext", "flux2"])
def test_reference_reductions_through_the_server(vmdiff_server, three_object_images, family):
    """Kontext: the tiny FLUX.1 file; FLUX.2 [klein]: the test-only tiny FLUX.2 loaders (σ: Flux2Scheduler)."""
    prompt = with_defaults(graph(three_object_images, family), vmdiff_server.object_info())
    entry = vmdiff_server.run(prompt, timeout=1500)
    img = pixels(vmdiff_server, entry, family)
    assert set(img) == {"a0", "r1", "a05", "a1", "a1_other", "a03_beta", "core_1", "core_12", "core_2"}, set(img)
    assert img["a0"].shape == (H, W, 3) and img["a0"].std() > 1.0
    gap = lambda a, b: float(np.abs(img[a] - img[b]).max())  # noqa: E731
    print(family, {pair: gap(*pair) for pair in [("a0", "r1"), ("a0", "core_1"), ("a05", "core_12"), ("a1", "a1_other"),
                                         ("a1", "core_2"), ("core_1", "core_2"), ("a0", "core_12")]})
    assert gap("a0", "r1") == 0.0  # α = 0 ≡ reference 1 alone, exactly
    assert gap("a0", "core_1") <= CORE_LEVELS  # ... and ≡ core's single-reference sampling
    assert gap("a05", "core_12") <= CORE_LEVELS  # α = 0.5, β = 1 ≡ core's two-reference sampling
    assert gap("a0", "core_12") > CORE_LEVELS  # reference 2 matters in plain sampling
    assert gap("a1", "a1_other") == 0.0  # α = 1: reference 1's picture plays no part
    assert gap("a1", "core_2") > 0.0  # reference 2 keeps the second reference's position offset
    assert gap("a03_beta", "a05") > 0.0
    texts = {k: " ".join(v.get("text", [])) for k, v in entry["outputs"].items()}
    assert f"ε_b: {2 * (T_DEN + 1)} NFE" in texts["blend"] and f"ε_b: {2 * (T_DEN + 1)} NFE" in texts["blend_beta"]
    assert f"{STEPS} NFE" in texts["mix_a0"] and "reference attention" in texts["mix_a0"]


def test_a_redux_token_set_beside_a_reference_is_refused_by_name(vmdiff_server, three_object_images):
    prompt = graph(three_object_images[:2])
    prompt = {k: v for k, v in prompt.items() if k in {"unet", "clip", "text_l", "text", "vae", "image_1", "image_2",
                                                       "ref_1", "ref_2"}}
    prompt["cv"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "sigclip_vision_patch14_384.safetensors"}}
    prompt["redux"] = {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "flux1-redux-dev.safetensors"}}
    prompt["z"] = {"class_type": "VMDiffReduxEncode", "inputs": {"clip_vision": ["cv", 0], "style_model": ["redux", 0],
                                                                 "image": ["image_2", 0]}}
    prompt["blend"] = {"class_type": "VMDiffBlendingNoise", "inputs": {
        "model": ["unet", 0], "tokens_1": ["ref_1", 0], "tokens_2": ["z", 0], "conditioning": ["text", 0], "seed": 1,
        "width": W, "height": H, "steps": STEPS, "t_den_step": T_DEN}}
    prompt["mix"] = {"class_type": "VMDiffMixingDenoise", "inputs": {
        "model": ["unet", 0], "eps_b": ["blend", 0], "tokens_1": ["ref_1", 0], "tokens_2": ["ref_2", 0],
        "conditioning": ["text", 0], "steps": STEPS}}
    prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["mix", 0], "vae": ["vae", 0]}}
    prompt["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "vmdiff_bad"}}
    entry = vmdiff_server.run(with_defaults(prompt, vmdiff_server.object_info()), timeout=600, check=False)
    assert entry["status"]["status_str"] == "error"
    message = " ".join(str(m) for m in entry["status"]["messages"])
    assert "tokens_2: a Redux token set cannot be mixed with reference images" in message
    # the server answers the next prompt
    ok = vmdiff_server.run(with_defaults(graph(three_object_images), vmdiff_server.object_info()), timeout=1500)
    assert ok["status"]["status_str"] == "success"
