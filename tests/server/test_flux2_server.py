"""The FLUX.2 stand-ins through a real ComfyUI 0.8.0 server: the test-only FLUX.2 loaders (VMDiffTestTinyFlux2,
VMDiffTestTinyFlux2VAE, VMDiffTestFlux2Text) feed core's own FLUX.2 two-reference graph (VAEEncode → ReferenceLatent
×2, EmptyFlux2LatentImage, Flux2Scheduler, SamplerCustomAdvanced, VAEDecode): the graph the FLUX.2 workflows put
beside VMDiff on the same seed and prompt."""
from PIL import Image


def flux2_two_reference_prompt(seed=0, size=32, order=("10", "11")):
    api = {
        "1": {"class_type": "VMDiffTestTinyFlux2", "inputs": {"seed": 0, "variant": "klein"}},
        "2": {"class_type": "VMDiffTestTinyFlux2VAE", "inputs": {"seed": 0}},
        "3": {"class_type": "VMDiffTestTinyClip", "inputs": {"seed": 0}},
        "4": {"class_type": "CLIPTextEncode",
              "inputs": {"clip": ["3", 0], "text": "A photo of owl creatively fused with jar."}},
        "5": {"class_type": "VMDiffTestFlux2Text", "inputs": {"conditioning": ["4", 0], "width": 96}},
        "6": {"class_type": "VMDiffTestImage",
              "inputs": {"seed": 1, "width": size, "height": size, "channels": 3, "batch": 1}},
        "7": {"class_type": "VMDiffTestImage",
              "inputs": {"seed": 2, "width": size, "height": size, "channels": 3, "batch": 1}},
        "10": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": ["2", 0]}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["2", 0]}},
        "12": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["5", 0], "latent": [order[0], 0]}},
        "13": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["12", 0], "latent": [order[1], 0]}},
        "14": {"class_type": "EmptyFlux2LatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "15": {"class_type": "Flux2Scheduler", "inputs": {"steps": 4, "width": size, "height": size}},
        "16": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "17": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "18": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["13", 0]}},
        "19": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["16", 0], "guider": ["18", 0], "sampler": ["17", 0], "sigmas": ["15", 0],
                          "latent_image": ["14", 0]}},
        "20": {"class_type": "VAEDecode", "inputs": {"samples": ["19", 0], "vae": ["2", 0]}},
        "21": {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "vmdiff_flux2_core"}},
    }
    return api


def test_core_flux2_two_reference_graph_runs_on_the_test_loaders(comfy_server, tmp_path):
    info = comfy_server.object_info()
    for node in ("VMDiffTestTinyFlux2", "VMDiffTestTinyFlux2VAE", "VMDiffTestFlux2Text"):
        assert node in info, node
    entry = comfy_server.run(flux2_two_reference_prompt(), timeout=600)
    first = comfy_server.download_images(entry, tmp_path / "a")
    assert len(first) == 1
    image = Image.open(first[0])
    assert image.size == (32, 32)  # 128-channel latent at 1/16, decoded by FLUX.2's VAE layout
    swapped = comfy_server.run(flux2_two_reference_prompt(order=("11", "10")), timeout=600)
    second = comfy_server.download_images(swapped, tmp_path / "b")
    assert Image.open(first[0]).tobytes() != Image.open(second[0]).tobytes()  # the references reach the model
