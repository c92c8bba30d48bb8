"""Small object folders and the manual workflow on the test-only tiny loaders: what the folder-runner tests and
benchmarks/bench_folder_ray.py run on (a cheap ComfyUI server with tests/custom_nodes, no model files)."""
import json
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]


def picture(path: Path, colour, size: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse([8, 8, size - 8, size - 8], fill=colour)
    image.save(path)
    return path


def folder_of(root: Path, names: list[str]) -> Path:
    colours = [(200, 30, 30), (30, 60, 200), (30, 160, 40), (230, 200, 20), (120, 40, 160), (20, 20, 20)]
    for k, name in enumerate(names):
        picture(root / name, colours[k % len(colours)])
    return root


TEST_NODES = REPO / "tests" / "custom_nodes" / "vmdiff_test_nodes"
TINY_LOADERS = {"UNETLoader": "VMDiffTestTinyFlux", "CLIPLoader": "VMDiffTestTinyClip",
                "CLIPVisionLoader": "VMDiffTestTinyClipVision", "StyleModelLoader": "VMDiffTestTinyRedux",
                "VAELoader": "VMDiffTestTinyVAE"}


def on_tiny_loaders(api: dict, **flux_inputs) -> dict:
    """In place: every model loader of the API prompt ``api`` (UNETLoader, CLIPLoader, …) becomes its test-only tiny
    loader (seed 0; ``flux_inputs`` go to the tiny Flux, e.g. seconds_per_call), which runs on the cheap server with
    no model files. Returns ``api``."""
    for node in api.values():
        if node["class_type"] in TINY_LOADERS:
            node["class_type"], node["inputs"] = TINY_LOADERS[node["class_type"]], {"seed": 0}
            if node["class_type"] == "VMDiffTestTinyFlux":
                node["inputs"].update(flux_inputs)
    return api


def tiny_workflow(path: Path, **flux_inputs) -> Path:
    """The manual workflow's API twin on the test-only tiny loaders (ComfyUI's real classes built in-process; the
    cheap server with no model files), written to ``path``; ``flux_inputs`` e.g. seconds_per_call."""
    api = on_tiny_loaders(json.loads((REPO / "workflows" / "api" / "vmdiff_manual.json").read_text()), **flux_inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(api))
    return path
