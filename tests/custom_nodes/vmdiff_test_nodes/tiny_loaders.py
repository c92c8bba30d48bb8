"""Test-only loaders that return ComfyUI's REAL classes built tiny in-process (vmdiff_cli/tiny_models), so the pack's
nodes
and shipped workflows run through a real server in milliseconds per model call; plus small probes for the
reliability suite (bad images, a NaN latent, slow/counted model calls).

Call logs: a model given ``call_log`` appends one line per call, ``<executing node id> <tag> <time.time()>``, so a
test can tell which node made each call and how many calls came after an interrupt.
"""
from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

import torch

from comfy_api.latest import io
from comfy_execution.utils import get_executing_context

REPO_ROOT = Path(__file__).resolve().parents[3]


def _tiny_models():
    """vmdiff_cli/tiny_models.py of this repository, imported by path (the server's sys.path does not hold the repo)."""
    name = "vmdiff_test_tiny_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "vmdiff_cli" / "tiny_models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def log_call(path: str, tag: str) -> None:
    if path:
        ctx = get_executing_context()
        with open(path, "a") as f:
            f.write(f"{ctx.node_id if ctx else '-'} {tag} {time.time():.6f}\n")


def _seed_input():
    return io.Int.Input("seed", default=0, min=0, max=2**31 - 1)


def _context_dim_input():
    return io.Int.Input("context_dim", default=64, min=8, max=4096, optional=True)


class VMDiffTestTinyFlux(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffTestTinyFlux", category="VMDiff/testing",
            inputs=[_seed_input(), _context_dim_input(),
                    io.Float.Input("seconds_per_call", default=0.0, min=0.0, max=60.0, optional=True),
                    io.String.Input("call_log", default="", optional=True),
                    io.Int.Input("nan_from_call", default=0, min=0, max=10**6, optional=True,
                                 tooltip="From this DiT call on (1-based) return NaN, like an overflowing fp16 Flux; "
                                         "0: never."),
                    io.String.Input("nan_calls", default="", optional=True,
                                    tooltip="These DiT calls (1-based; '5', '5-6', '3,7-8') return NaN; the others "
                                            "are finite."),
                    io.Combo.Input("nan_value", options=["nan", "inf"], default="nan", optional=True,
                                   tooltip="inf: the bad calls return +inf everywhere instead of NaN.")],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, seed, context_dim=64, seconds_per_call=0.0, call_log="", nan_from_call=0, nan_calls="",
                nan_value="nan"):
        model = _tiny_models().tiny_flux(seed, context_dim=context_dim)
        bad_calls = {k for part in nan_calls.replace(" ", "").split(",") if part
                     for k in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)}
        if seconds_per_call or call_log or nan_from_call or bad_calls:
            calls = [0]

            def wrapper(apply_model, args):
                log_call(call_log, "dit")
                time.sleep(seconds_per_call)  # before the model: an interrupt lands here, the model's ops raise
                calls[0] += 1
                out = apply_model(args["input"], args["timestep"], **args["c"])
                if not (nan_from_call and calls[0] >= nan_from_call or calls[0] in bad_calls):
                    return out
                return torch.full_like(out, math.inf) if nan_value == "inf" else out * math.nan
            model.set_model_unet_function_wrapper(wrapper)
        return io.NodeOutput(model)


class VMDiffTestTinyClip(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestTinyClip", category="VMDiff/testing", inputs=[_seed_input()],
                         outputs=[io.Clip.Output()])

    @classmethod
    def execute(cls, seed):
        return io.NodeOutput(_tiny_models().tiny_clip_l(seed))


class VMDiffTestTinyClipVision(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestTinyClipVision", category="VMDiff/testing", inputs=[_seed_input()],
                         outputs=[io.ClipVision.Output()])

    @classmethod
    def execute(cls, seed):
        return io.NodeOutput(_tiny_models().tiny_clip_vision(seed))


class VMDiffTestTinyRedux(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestTinyRedux", category="VMDiff/testing",
                         inputs=[_seed_input(), _context_dim_input()],
                         outputs=[io.StyleModel.Output()])

    @classmethod
    def execute(cls, seed, context_dim=64):
        return io.NodeOutput(_tiny_models().tiny_style_model(seed, context_dim=context_dim))


class VMDiffTestTinyVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestTinyVAE", category="VMDiff/testing", inputs=[_seed_input()],
                         outputs=[io.Vae.Output()])

    @classmethod
    def execute(cls, seed):
        return io.NodeOutput(_tiny_models().tiny_vae(seed))


class VMDiffTestImage(io.ComfyNode):
    """A seeded IMAGE of any shape, empty ones too (0×0, a batch of 0): (batch, height, width, channels); ``nan``
    puts one NaN pixel in it. No stock node makes an empty IMAGE; upstream custom nodes (crops, batch filters) do."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffTestImage", category="VMDiff/testing",
            inputs=[_seed_input(), io.Int.Input("width", default=64, min=0, max=8192),
                    io.Int.Input("height", default=64, min=0, max=8192),
                    io.Int.Input("channels", default=3, min=1, max=8), io.Int.Input("batch", default=1, min=0, max=16),
                    io.Boolean.Input("nan", default=False, optional=True),
                    io.Combo.Input("dtype", options=list(DTYPES), default="float32", optional=True)],
            outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, seed, width, height, channels, batch, nan=False, dtype="float32"):
        image = torch.rand((batch, height, width, channels), generator=torch.Generator().manual_seed(seed))
        if nan:
            image[0, height // 2, width // 2, 0] = math.nan
        return io.NodeOutput(image.to(DTYPES[dtype]))


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


class VMDiffTestCast(io.ComfyNode):
    """The tensor it is given (an IMAGE, a MASK, or a LATENT's samples, every other key kept) in another dtype, as
    nodes and loaders running in half precision hand them on."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestCast", category="VMDiff/testing",
                         inputs=[io.AnyType.Input("value"), io.Combo.Input("dtype", options=list(DTYPES))],
                         outputs=[io.AnyType.Output()])

    @classmethod
    def execute(cls, value, dtype):
        if isinstance(value, dict):
            return io.NodeOutput(dict(value, samples=value["samples"].to(DTYPES[dtype])))
        return io.NodeOutput(value.to(DTYPES[dtype]))


class VMDiffTestFloat(io.ComfyNode):
    """A FLOAT parsed from text, so a prompt can link "nan" / "inf" (JSON cannot carry them)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestFloat", category="VMDiff/testing",
                         inputs=[io.String.Input("value", default="nan")], outputs=[io.Float.Output()])

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(float(value))


class VMDiffTestNaNLatent(io.ComfyNode):
    """The LATENT it is given (every key kept, e.g. the noise-space marker) with one value set to NaN."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestNaNLatent", category="VMDiff/testing", inputs=[io.Latent.Input("latent")],
                         outputs=[io.Latent.Output()])

    @classmethod
    def execute(cls, latent):
        samples = latent["samples"].clone()
        samples.view(-1)[samples.numel() // 2] = math.nan
        return io.NodeOutput(dict(latent, samples=samples))


class VMDiffTestConditioning(io.ComfyNode):
    """A CONDITIONING no stock node makes from one prompt: ``batch_2`` (each entry's tokens and pooled vector
    stacked with a second, halved prompt: a batch of 2), ``empty`` (no entry), ``narrow_pooled`` (the pooled vector
    cut by 8)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestConditioning", category="VMDiff/testing",
                         inputs=[io.Conditioning.Input("conditioning"),
                                 io.Combo.Input("mode", options=["batch_2", "empty", "narrow_pooled"])],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, conditioning, mode):
        if mode == "empty":
            return io.NodeOutput([])
        out = []
        for tokens, extras in conditioning:
            extras, pooled = dict(extras), extras.get("pooled_output")
            if mode == "batch_2":
                tokens = torch.cat([tokens, tokens * 0.5])
                if pooled is not None:
                    extras["pooled_output"] = torch.cat([pooled, pooled * 0.5])
            elif pooled is not None:
                extras["pooled_output"] = pooled[..., :-8]
            out.append([tokens, extras])
        return io.NodeOutput(out)


def _slow_hook(module, args):
    config, ctx = module._vmdiff_test_slow, get_executing_context()
    if ctx is not None and ctx.prompt_id == config["prompt_id"]:
        log_call(config["call_log"], config["tag"])
        time.sleep(config["seconds"])


class VMDiffTestSlowScorerModel(io.ComfyNode):
    """Passes a VMDiff scorer model (DINOv2 / OpenCLIP loader output) through, making each of its forward passes
    (OpenCLIP: image tower) sleep and log a line, in the prompt that ran this node only (the loader output is a
    cached object shared with later prompts). The hook is registered once per module."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffTestSlowScorerModel", category="VMDiff/testing",
            inputs=[io.AnyType.Input("model"), io.Float.Input("seconds_per_call", default=0.0, min=0.0, max=60.0),
                    io.String.Input("call_log", default=""), io.String.Input("tag", default="scorer")],
            outputs=[io.AnyType.Output()])

    @classmethod
    def execute(cls, model, seconds_per_call, call_log, tag):
        inner = model.patcher.model.inner
        module = getattr(inner, "visual", inner)
        if not hasattr(module, "_vmdiff_test_slow"):
            module.register_forward_pre_hook(_slow_hook)
        module._vmdiff_test_slow = {"seconds": seconds_per_call, "call_log": call_log, "tag": tag,
                                    "prompt_id": get_executing_context().prompt_id}
        return io.NodeOutput(model)


NODES = [VMDiffTestFloat, VMDiffTestTinyFlux, VMDiffTestTinyClip, VMDiffTestTinyClipVision, VMDiffTestTinyRedux,
         VMDiffTestTinyVAE, VMDiffTestImage, VMDiffTestNaNLatent, VMDiffTestSlowScorerModel, VMDiffTestConditioning,
         VMDiffTestCast]
