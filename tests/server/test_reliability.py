"""Reliability of the pack inside a long-lived ComfyUI server: bad inputs, interrupts, memory over many
prompts, untrusted model files.

Everything runs through ONE cheap real server (no big model files): the shipped workflows' API twins with their
model loaders swapped for the test-only tiny loaders (tests/custom_nodes/vmdiff_test_nodes/tiny_loaders.py, ComfyUI's
real classes built tiny in-process); every pack node is kept. Only the cases about model FILES (missing, corrupted,
unsafe pickles) use loader nodes, on small files written into the server's own models folder.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from vmdiff_cli.comfy_server import ExecutionError, PromptError
from vmdiff_cli.run_workflow import apply_inputs, synthetic_objects
from vmdiff_cli.tiny_models import default_tiny_models_dir
from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES, ensure_tiny_scorers
from tests.support.tiny_folders import TINY_LOADERS, on_tiny_loaders
from tests.support.workflows import shrink

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TEST_NODES = REPO / "tests" / "custom_nodes" / "vmdiff_test_nodes"
API = REPO / "workflows" / "api"
SMALL = {**shrink("VMDiffBlendingNoise", "VMDiffMixingDenoise", "VMDiffAutoTune",
                  VMDiffBlendingNoise={"steps": 4, "t_den_step": 1}, VMDiffMixingDenoise={"steps": 4},
                  VMDiffAutoTune={"alpha_tol": 0.1, "beta_tol": 2.0}),
         "VMDiffLoadDINOv2": {"dinov2": TINY_SCORER_NAMES["dinov2"]},
         "VMDiffLoadOpenCLIP": {"model_name": TINY_SCORER_NAMES["open_clip_model"],
                                "checkpoint": TINY_SCORER_NAMES["open_clip"]},
         "VMDiffLoadGroundingDINO": {"checkpoint": TINY_SCORER_NAMES["grounding_dino_hf"]},
         # no GroundingDINO pass per candidate (seconds each on the CPU); the detector is still loaded
         "VMDiffScorer": {"detect_size": 64, "isolation": "none"}}
CORRUPT, TRUNCATED = "vmdiff-test-corrupt.safetensors", "vmdiff-test-truncated.safetensors"
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 375042383\n"
HTML_PAGE = b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n"
SCORER_FOLDERS = ("dinov2", "open_clip", "bert-base-uncased", "grounding-dino", "sams")


# --------------------------------------------------------------------------------------------------
# the server, its inputs and the workflows

@pytest.fixture(scope="module")
def server(comfy_server_factory):
    """The cheap server: the pack + the test-only nodes, no model folders; small files go into <base>/models."""
    srv = comfy_server_factory(None, [TEST_NODES])
    models = srv.base / "models"
    scorers = default_tiny_models_dir()
    ensure_tiny_scorers(scorers)  # the tiny scorer files only (a few MB + a 126 MB GroundingDINO), cached
    for name in SCORER_FOLDERS:  # linked file by file: the tests add their own bad files beside them
        (models / name).mkdir(parents=True, exist_ok=True)
        for entry in (scorers / name).iterdir():
            if not (models / name / entry.name).exists():
                (models / name / entry.name).symlink_to(entry)
    # corrupted files: garbage named .safetensors, and a real safetensors file cut in half
    (models / "vae").mkdir(exist_ok=True)
    (models / "vae" / CORRUPT).write_bytes(os.urandom(4096))
    whole = (scorers / "open_clip" / TINY_SCORER_NAMES["open_clip"]).read_bytes()
    (models / "open_clip" / TRUNCATED).write_bytes(whole[:len(whole) // 2])
    # files that are not models, in each scorer loader format: a release file that is a Git LFS pointer, a cut-off
    # release checkpoint, Hugging Face folders whose weights are an HTML page / empty
    (models / "sams" / "sam_vit_b_01ec64.pth").write_bytes(LFS_POINTER)
    gdino = (scorers / "grounding-dino" / TINY_SCORER_NAMES["grounding_dino"]).read_bytes()
    (models / "grounding-dino" / "vmdiff-test-cut.pth").write_bytes(gdino[:len(gdino) // 3])
    for kind, source, name, data in (("grounding-dino", TINY_SCORER_NAMES["grounding_dino_hf"], "vmdiff-test-html",
                                      HTML_PAGE), ("dinov2", TINY_SCORER_NAMES["dinov2"], "vmdiff-test-empty", b"")):
        (models / kind / name).mkdir(exist_ok=True)
        (models / kind / name / "config.json").write_bytes((scorers / kind / source / "config.json").read_bytes())
        (models / kind / name / "model.safetensors").write_bytes(data)
    return srv


@pytest.fixture(scope="module")
def uploaded(server, tmp_path_factory):
    paths = synthetic_objects(tmp_path_factory.mktemp("inputs"), size=96)
    return [server.upload_image(p, f"vmdiff_reliability_{i + 1}.png") for i, p in enumerate(paths)]


def tiny_workflow(name: str, uploaded, **inputs) -> dict:
    """A shipped workflow's API twin on the tiny loaders, small sizes, the uploaded images; ``inputs`` set every
    widget of that name outside the tiny loaders (their seed picks the weights)."""
    api = on_tiny_loaders(json.loads((API / f"{name}.json").read_text()))
    apply_inputs(api, uploaded, ["owl", "jar"], [], SMALL)
    for node in api.values():
        for key, value in inputs.items():
            if key in node["inputs"] and not isinstance(node["inputs"][key], list) and node["class_type"] not in \
                    TINY_LOADERS.values():
                node["inputs"][key] = value
    return api


def nid(api: dict, class_type: str, nth: int = 0) -> str:
    return sorted((k for k, v in api.items() if v["class_type"] == class_type), key=int)[nth]


def add(api: dict, class_type: str, **inputs) -> list:
    """Add a node; returns a link to its first output."""
    node_id = str(max(int(k) for k in api) + 1)
    api[node_id] = {"class_type": class_type, "inputs": inputs}
    return [node_id, 0]


_seed = iter(range(1000, 10**6))


def valid_prompt(uploaded) -> dict:
    """The manual workflow with a fresh seed, so it really runs (nothing served from the cache)."""
    return tiny_workflow("vmdiff_manual", uploaded, seed=next(_seed))


def texts(entry: dict) -> str:
    return " | ".join(t for out in entry.get("outputs", {}).values() for t in out.get("text", []))


def error_text(exc: Exception) -> str:
    if isinstance(exc, PromptError):
        return "; ".join(f"{v['class_type']}: " + ", ".join(f"{e['message']}: {e['details']}" for e in v["errors"])
                         for v in exc.node_errors.values()) or str(exc.error)
    return str(exc)


def outcome(server, api: dict) -> tuple[str, str]:
    """("refused", message) at validation, ("failed", message) while running, or ("handled", node texts)."""
    try:
        return "handled", texts(server.run(api, timeout=300))
    except PromptError as exc:
        return "refused", error_text(exc)
    except ExecutionError as exc:
        return "failed", error_text(exc)


# --------------------------------------------------------------------------------------------------
# 1. bad-input matrix

@dataclass
class Case:
    name: str
    mutate: Callable[[dict], None]
    expect: str                # refused | failed | handled
    says: tuple[str, ...]      # what the message (or the handled run's texts) must contain
    workflow: str = "vmdiff_manual"


def set_input(class_type, **inputs):
    def mutate(api):
        api[nid(api, class_type)]["inputs"].update(inputs)
    return mutate


def with_sam(checkpoint):
    """The workflow's Scorer with a VMDiff Load SAM of ``checkpoint`` (the shipped workflows need no SAM)."""
    def mutate(api):
        api[nid(api, "VMDiffScorer")]["inputs"]["sam"] = add(api, "VMDiffLoadSAM", checkpoint=checkpoint)
    return mutate


def image_into(class_type, name, **spec):
    """``class_type``'s IMAGE input ``name`` fed by a VMDiff Test Image of ``spec`` (any shape, empty ones too)."""
    def mutate(api):
        api[nid(api, class_type)]["inputs"][name] = add(api, "VMDiffTestImage", **dict(
            dict(seed=1, width=64, height=64, channels=3, batch=1), **spec))
    return mutate


def image_1(**spec):
    return image_into("VMDiffReduxEncode", "image", **spec)


def rgba(api):
    load = nid(api, "LoadImage")
    api[nid(api, "VMDiffReduxEncode")]["inputs"]["image"] = add(api, "JoinImageWithAlpha", image=[load, 0],
                                                                 alpha=[load, 1])


def linked(class_type, name, primitive, value):
    def mutate(api):
        api[nid(api, class_type)]["inputs"][name] = add(api, primitive, value=value)
    return mutate


def nan_eps_b(api):
    mixing = api[nid(api, "VMDiffMixingDenoise")]["inputs"]
    mixing["eps_b"] = add(api, "VMDiffTestNaNLatent", latent=mixing["eps_b"])


def other_redux(api):
    api[nid(api, "VMDiffReduxEncode", 1)]["inputs"]["style_model"] = add(api, "VMDiffTestTinyRedux", seed=1)


def narrow_redux(api):
    for k in (0, 1):
        api[nid(api, "VMDiffReduxEncode", k)]["inputs"]["style_model"] = add(api, "VMDiffTestTinyRedux", seed=0,
                                                                             context_dim=48)


def nan_model(class_type):
    """``class_type``'s MODEL replaced by a tiny Flux whose DiT returns NaN from its 2nd call on."""
    def mutate(api):
        api[nid(api, class_type)]["inputs"]["model"] = add(api, "VMDiffTestTinyFlux", seed=0, nan_from_call=2)
    return mutate


def concat_beside_a_set(api):
    """Mix Tokens N's concat of the two sets into Blending Noise's tokens_1, the second set still in tokens_2."""
    blend = api[nid(api, "VMDiffBlendingNoise")]["inputs"]
    mix = add(api, "VMDiffMixTokensN", tokens_1=blend["tokens_1"], tokens_2=blend["tokens_2"], mix_rule="slerp",
              **{f"weight_{k}": 1.0 for k in range(1, 5)})
    blend["tokens_1"] = [mix[0], 1]


def real_loader(class_type, **inputs):
    """Put a real ComfyUI loader back in place of its tiny twin (for the cases about model files)."""
    def mutate(api):
        tiny = nid(api, TINY_LOADERS[class_type])
        api[tiny] = {"class_type": class_type, "inputs": inputs}
    return mutate


CASES = [
    Case("RGBA image (Join Image with Alpha)", rgba, "handled", ("alpha channel dropped",)),
    Case("grey image (1 channel)", image_1(channels=1), "handled", ("grey image repeated to RGB",)),
    Case("images of different sizes (200×120 vs 96×96)", image_1(width=200, height=120), "handled",
         ("from a 200×120 image",)),
    Case("image size not a multiple of 16 (97×61)", image_1(width=97, height=61), "handled", ("from a 97×61 image",)),
    Case("batch of 2 images as image 1", image_1(batch=2), "failed", ("image: got a batch of 2", "ImageFromBatch")),
    Case("NaN pixel in image 1", image_1(nan=True), "failed", ("image:", "NaN")),
    Case("0×0 image as image 1", image_1(width=0, height=0), "failed", ("image:", "pixels (empty)")),
    Case("empty batch (0 images) as image 1", image_1(batch=0), "failed", ("image:", "an empty batch")),
    Case("0×0 layout image (MagicMix)", image_into("VMDiffMagicMix", "layout_image", width=0, height=0), "failed",
         ("layout_image:", "pixels (empty)"), "vmdiff_magicmix_flux"),
    Case("empty batch as the Scorer's images (Similarity Score)",
         image_into("VMDiffSimilarityScore", "images", batch=0), "failed", ("images:", "an empty batch"),
         "vmdiff_manual_scored"),
    Case("width 100 (not a multiple of 16)", set_input("VMDiffBlendingNoise", width=100), "failed",
         ("width: 100 is not a positive multiple of 16", "try 96")),
    Case("α = 1.5 (widget)", set_input("VMDiffMixingDenoise", alpha=1.5), "refused",
         ("alpha: 1.5 is above the maximum 1.0",)),
    Case("α = -0.25 (linked Float)", linked("VMDiffMixingDenoise", "alpha", "PrimitiveFloat", -0.25), "failed",
         ("alpha: -0.25 is below the minimum 0.0",)),
    Case("β2 = 0 (widget)", set_input("VMDiffBlendingNoise", beta_2=0.0), "refused",
         ("beta_2: 0.0 is below the minimum 0.01",)),
    Case("β1 = -1 (linked Float)", linked("VMDiffBlendingNoise", "beta_1", "PrimitiveFloat", -1.0), "failed",
         ("beta_1: -1.0 is below the minimum 0.01",)),
    Case("NaN in the eps_b latent", nan_eps_b, "failed", ("eps_b:", "NaN")),
    Case("VAE latent (Empty Latent Image) as eps_b", lambda api: api[nid(api, "VMDiffMixingDenoise")]["inputs"].update(
        eps_b=add(api, "EmptyLatentImage", width=32, height=32, batch_size=1)), "failed",
         ("eps_b: expected the eps_b output of VMDiff Blending Noise",)),
    Case("t_den_step 3 of a 4-step grid (widget)", set_input("VMDiffBlendingNoise", t_den_step=3), "refused",
         ("t_den_step", "use 0…2")),
    Case("t_den_step 3 of a 4-step grid (linked Int)", linked("VMDiffBlendingNoise", "t_den_step", "PrimitiveInt", 3),
         "failed", ("t_den_step: 3 is outside the 4-step grid; use 0…2",)),
    Case("steps 1 (widget, below the minimum 2)", set_input("VMDiffBlendingNoise", steps=1, t_den_step=0), "refused",
         ("steps: 1 is below the minimum 2",)),
    Case("Auto-Tune alpha_min −0.5 (widget)", set_input("VMDiffAutoTune", alpha_min=-0.5), "refused",
         ("alpha_min: -0.5 is below the minimum 0.0",), "vmdiff_full"),
    Case("Auto-Tune beta_min 0.5 (linked Float) ≥ beta_max 0.4", lambda api: (
        linked("VMDiffAutoTune", "beta_min", "PrimitiveFloat", 0.5)(api),
        set_input("VMDiffAutoTune", beta_max=0.4)(api)), "failed",
         ("beta_min: 0.5 must be below beta_max (0.4)",), "vmdiff_full"),
    # linked values out of range, non-finite outputs, text of the wrong encoder, files that are not models
    Case("Auto-Tune alpha_tol 0 (linked Float)", linked("VMDiffAutoTune", "alpha_tol", "PrimitiveFloat", 0.0),
         "failed", ("alpha_tol: 0.0 is below the minimum 0.0001",), "vmdiff_full"),
    Case("Blending Noise width 2^17 (linked Int)", linked("VMDiffBlendingNoise", "width", "PrimitiveInt", 2 ** 17),
         "failed", ("width: 131072 is above the maximum 4096",)),
    Case("NaN guidance (linked Float) on Mixing Denoise", linked("VMDiffMixingDenoise", "guidance", "VMDiffTestFloat",
                                                                 "nan"), "failed",
         ("guidance: nan is not a finite number",)),
    Case("a model that returns NaN (fp16 overflow) into Mixing Denoise", nan_model("VMDiffMixingDenoise"), "failed",
         ("VMDiff Mixing Denoise: the model's prediction at model pass 2 of 4", "weight_dtype")),
    Case("Mix Tokens N concat in tokens_1 + a second Redux set in tokens_2", concat_beside_a_set, "failed",
         ("tokens_1: is already the SCat (concat) of tokens_1, tokens_2", "leave tokens_2 unconnected")),
    Case("MagicMix on Flux, text content from the CLIP-L-only Fusion Prompt",
         lambda api: api[nid(api, "VMDiffMagicMix")]["inputs"].pop("content_tokens"), "failed",
         ("content: its text tokens are 32 wide", "Flux text needs T5-XXL", "or connect content_tokens"),
         "vmdiff_magicmix_flux"),
    Case("token sets from different Redux models", other_redux, "failed",
         ("tokens_2: made by a different CLIP vision / Redux model", "same loaders")),
    Case("Redux tokens narrower than the model's context", narrow_redux, "failed",
         ("tokens_1: tokens are 48 wide but the model's context expects 64",)),
    Case("label_1 empty", set_input("VMDiffFusionPrompt", label_1="  "), "failed",
         ("label_1: the object label is empty",)),
    Case("label_2 of 10 000 characters", set_input("VMDiffFusionPrompt", label_2="jar " * 2500), "failed",
         ("label_2: too long by 2434 CLIP tokens", "reads only the first 75", "few words")),
    Case("label_1 of 40 Chinese characters", set_input("VMDiffFusionPrompt", label_1="猫头鹰" * 13 + "罐"), "failed",
         ("label_1: too long by 41 CLIP tokens", "label_1 107, label_2 1, template 8")),
    Case("label_2 of 60 emoji", set_input("VMDiffFusionPrompt", label_2="🦉🏺" * 30), "failed",
         ("label_2: too long by",)),
    Case("missing model file (UNETLoader)", real_loader("UNETLoader", unet_name="flux1-krea-dev.safetensors",
                                                        weight_dtype="default"), "refused",
         ("Value not in list: unet_name: 'flux1-krea-dev.safetensors'",)),
    Case("missing model file (VMDiff Load SAM)", with_sam("sam_vit_h_4b8939.pth"),
         "refused", ("sams: file 'sam_vit_h_4b8939.pth' was not found in", "sam_vit_b_01ec64.pth",
                     "github.com/facebookresearch/segment-anything"), "vmdiff_full"),
    Case("Git LFS pointer as release file (VMDiff Load SAM)", with_sam("sam_vit_b_01ec64.pth"), "refused",
         ("sams: sam_vit_b_01ec64.pth in", "Git LFS pointer", "375,042,383 bytes", "github.com/facebookresearch"),
         "vmdiff_full"),
    Case("cut-off release .pth (VMDiff Load GroundingDINO)",
         set_input("VMDiffLoadGroundingDINO", checkpoint="vmdiff-test-cut.pth", bert=TINY_SCORER_NAMES["bert"]),
         "refused", ("grounding-dino: vmdiff-test-cut.pth in", "cut-off PyTorch checkpoint", "huggingface.co"),
         "vmdiff_full"),
    Case("HTML page as model.safetensors (VMDiff Load GroundingDINO, Hugging Face folder)",
         set_input("VMDiffLoadGroundingDINO", checkpoint="vmdiff-test-html"), "refused",
         ("grounding-dino: model.safetensors in", "vmdiff-test-html", "an HTML page"), "vmdiff_full"),
    Case("empty model.safetensors (VMDiff Load DINOv2, Hugging Face folder)",
         set_input("VMDiffLoadDINOv2", dinov2="vmdiff-test-empty"), "refused",
         ("dinov2: model.safetensors in", "vmdiff-test-empty", "is empty (0 bytes"), "vmdiff_full"),
    Case("corrupted .safetensors (VAELoader, random bytes)", real_loader("VAELoader", vae_name=CORRUPT), "failed",
         ("VAELoader", "header too large")),
    Case("truncated .safetensors (VMDiff Load OpenCLIP)", set_input("VMDiffLoadOpenCLIP", checkpoint=TRUNCATED),
         "refused", (f"open_clip: {TRUNCATED} in", "not a complete safetensors file", "Download it again"),
         "vmdiff_full"),
]


@pytest.fixture(scope="module")
def matrix(request):
    rows: list[tuple[str, str, str]] = []
    yield rows
    width = max(len(r[0]) for r in rows) if rows else 10
    lines = ["", "bad-input matrix (case → outcome → message)", f"| {'case':{width}} | outcome  | message |",
             f"|{'-' * (width + 2)}|----------|---------|"]
    lines += [f"| {c:{width}} | {o:8} | {m[:220].replace('|', '/')} |" for c, o, m in rows]
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    for line in lines:
        reporter.write_line(line) if reporter else print(line)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(server, uploaded, matrix, case):
    api = tiny_workflow(case.workflow, uploaded, seed=next(_seed))
    case.mutate(api)
    got, message = outcome(server, api)
    if got == "handled":  # keep the node texts that show how the input was handled
        message = " | ".join(t for t in message.split(" | ") if any(p in t for p in case.says)) or message
    matrix.append((case.name, got, message.replace("\n", " ")))
    assert got == case.expect, message
    for part in case.says:
        assert part in message, message
    after = server.run(valid_prompt(uploaded), timeout=300)  # the server goes on
    assert after["status"]["status_str"] == "success"


# --------------------------------------------------------------------------------------------------
# 2. interrupt: the prompt stops within one model step, the next prompt runs normally

def calls(log: Path, node: str | None = None, tag: str | None = None) -> list[float]:
    """The call times (time.time()) logged by the test models, optionally of one node / one tag."""
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines()]
    return [float(t) for n, g, t in rows if (node is None or n == node) and (tag is None or g == tag)]


def interrupt_after(server, api: dict, log: Path, node: str, n_calls: int, tag: str | None = None) -> dict:
    """Queue ``api``, POST /interrupt as soon as ``node`` has made ``n_calls`` logged model calls (so it lands
    during a call), wait for the end; returns what happened around the interrupt."""
    prompt_id = server.queue(api)
    deadline = time.monotonic() + 120
    while len(calls(log, node, tag)) < n_calls:
        assert time.monotonic() < deadline, f"node {node} never made {n_calls} calls: {log.read_text()[-500:]}"
        time.sleep(0.01)
    at = time.time()
    server.interrupt()
    entry = server.wait(prompt_id, timeout=120)
    ended = max(m[1]["timestamp"] for m in entry["status"]["messages"]) / 1000
    after = [t for t in calls(log) if t > at]
    return {"entry": entry, "calls_after": len(after), "after": after, "stop_seconds": ended - at,
            "calls_total": len(calls(log)), "messages": [m[0] for m in entry["status"]["messages"]]}


def slow_flux(api: dict, log: Path, seconds: float = 0.4) -> None:
    api[nid(api, "VMDiffTestTinyFlux")]["inputs"].update(seconds_per_call=seconds, call_log=str(log))


INTERRUPT_REPORT: dict[str, dict] = {}


def check_interrupted(server, uploaded, what: str, got: dict, seconds: float) -> None:
    INTERRUPT_REPORT[what] = {k: got[k] for k in ("calls_after", "stop_seconds", "calls_total")}
    print(f"interrupt during {what}: {got['calls_after']} model call(s) started after /interrupt, prompt ended "
          f"{got['stop_seconds']:.2f} s after it; {got['calls_total']} calls in all")
    assert "execution_interrupted" in got["messages"], got["messages"]
    assert got["calls_after"] <= 1, got  # the call in flight may finish; no further model step starts
    assert got["stop_seconds"] < 2 * seconds + 1.0, got
    after = server.run(valid_prompt(uploaded), timeout=300)
    assert after["status"]["status_str"] == "success"


def test_interrupt_during_blending_noise(server, uploaded, tmp_path):
    api = tiny_workflow("vmdiff_manual", uploaded, seed=next(_seed), steps=20, t_den_step=10)  # 22 DiT calls
    slow_flux(api, tmp_path / "calls.log")
    got = interrupt_after(server, api, tmp_path / "calls.log", nid(api, "VMDiffBlendingNoise"), 3)
    assert not calls(tmp_path / "calls.log", nid(api, "VMDiffMixingDenoise"))
    check_interrupted(server, uploaded, "Blending Noise", got, 0.4)


def test_interrupt_during_mixing_denoise(server, uploaded, tmp_path):
    api = tiny_workflow("vmdiff_manual", uploaded, seed=next(_seed))
    api[nid(api, "VMDiffMixingDenoise")]["inputs"]["steps"] = 20
    slow_flux(api, tmp_path / "calls.log")
    got = interrupt_after(server, api, tmp_path / "calls.log", nid(api, "VMDiffMixingDenoise"), 3)
    check_interrupted(server, uploaded, "Mixing Denoise", got, 0.4)


def test_interrupt_during_scoring(server, uploaded, tmp_path):
    """VMDiff Similarity Score of the scored workflow: the interrupt lands in its DINOv2 pass; the OpenCLIP image
    pass that would follow in the same score call must not start."""
    log = tmp_path / "calls.log"
    api = tiny_workflow("vmdiff_manual_scored", uploaded, seed=next(_seed))
    scorer = api[nid(api, "VMDiffScorer")]["inputs"]
    scorer["dino"] = add(api, "VMDiffTestSlowScorerModel", model=scorer["dino"], seconds_per_call=1.0,
                         call_log=str(log), tag="dino")
    scorer["open_clip"] = add(api, "VMDiffTestSlowScorerModel", model=scorer["open_clip"], seconds_per_call=0.0,
                              call_log=str(log), tag="clip_image")
    score = nid(api, "VMDiffSimilarityScore")
    got = interrupt_after(server, api, log, score, 1, tag="dino")
    assert not calls(log, score, "clip_image"), log.read_text()
    check_interrupted(server, uploaded, "scoring (Similarity Score)", got, 1.0)


def test_interrupt_during_auto_tune(server, uploaded, tmp_path):
    api = tiny_workflow("vmdiff_full", uploaded, seed=next(_seed))
    slow_flux(api, tmp_path / "calls.log")
    tune = nid(api, "VMDiffAutoTune")
    got = interrupt_after(server, api, tmp_path / "calls.log", tune, 5)  # inside the 2nd candidate
    check_interrupted(server, uploaded, "Auto-Tune", got, 0.4)


# --------------------------------------------------------------------------------------------------
# 3. memory over many prompts

MEMORY_PROMPTS, MEMORY_SIZE = 20, 96
RSS_BOUND_MB = 8  # a leak of one decoded 96² image and its latent per candidate would add ~11 MB over 18 prompts


def test_memory_is_flat_over_20_full_workflow_prompts(server, uploaded):
    """The full workflow (Redux → prompt → four scorer loaders → Scorer → Auto-Tune → Save Image + plot + grid) 20
    times with new seeds at 96²: the server's RSS after prompt 20 stays within RSS_BOUND_MB of after prompt 2."""
    import psutil

    process = psutil.Process(server.pid)
    rss, seconds, cpu_start = [], [], sum(process.cpu_times()[:2])
    for i in range(MEMORY_PROMPTS):
        api = tiny_workflow("vmdiff_full", uploaded, seed=next(_seed), width=MEMORY_SIZE, height=MEMORY_SIZE)
        start = time.monotonic()
        entry = server.run(api, timeout=300)
        seconds.append(time.monotonic() - start)
        assert entry["status"]["status_str"] == "success"
        assert nid(api, "VMDiffAutoTune") not in [n for m in entry["status"]["messages"]
                                                  if m[0] == "execution_cached" for n in m[1]["nodes"]]
        rss.append(process.memory_info().rss / 2**20)
    growth = rss[-1] - rss[1]
    print(f"RSS after each prompt (MB): {[round(r) for r in rss]}; after 2: {rss[1]:.0f}, after {MEMORY_PROMPTS}: "
          f"{rss[-1]:.0f}, growth {growth:+.1f} MB (bound {RSS_BOUND_MB}); {sum(seconds) / len(seconds):.2f} s/prompt, "
          f"{(sum(process.cpu_times()[:2]) - cpu_start) / MEMORY_PROMPTS:.2f} server CPU s/prompt")
    assert growth < RSS_BOUND_MB, rss


# --------------------------------------------------------------------------------------------------
# 4. untrusted files: a pickle payload in a model folder is refused without running

class _Payload:
    """Unpickling this runs ``open(marker, "w")``: a real payload that leaves a file behind if executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payloads_are_refused_without_running(server, uploaded, tmp_path):
    marker = tmp_path / "payload_ran"
    evil = "vmdiff-test-evil.pth"
    models = server.base / "models"
    for folder in ("vae", "sams", "open_clip"):  # ComfyUI's VAELoader, VMDiff Load SAM, VMDiff Load OpenCLIP
        torch.save({"model": {"w": torch.zeros(2)}, "payload": _Payload(marker)}, models / folder / evil)
    attempts = {
        "VAELoader (ComfyUI)": (tiny_workflow("vmdiff_manual", uploaded), real_loader("VAELoader", vae_name=evil),
                                ("Weights only load failed",)),
        "VMDiff Load SAM": (tiny_workflow("vmdiff_full", uploaded), with_sam(evil),
                            (f"sams: refused to load {evil}", "could run arbitrary code", ".safetensors")),
        "VMDiff Load OpenCLIP": (tiny_workflow("vmdiff_full", uploaded),
                                 set_input("VMDiffLoadOpenCLIP", checkpoint=evil),
                                 (f"open_clip: refused to load {evil}", "could run arbitrary code")),
    }
    for loader, (api, mutate, says) in attempts.items():
        mutate(api)
        got, message = outcome(server, api)
        print(f"{loader}: {got}: {message[:300]}")
        assert got == "failed" and all(s in message for s in says), message
        assert not marker.exists(), f"{loader} ran the pickle payload"
    assert server.run(valid_prompt(uploaded))["status"]["status_str"] == "success"
    torch.load(models / "vae" / evil, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()
