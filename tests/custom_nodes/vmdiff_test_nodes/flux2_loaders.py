"""Test-only FLUX.2 loaders: ComfyUI 0.8.0's real FLUX.2 classes built tiny in-process
(vmdiff_cli/tiny_flux2),
since a file 0.8.0's loader detects as FLUX.2 is at least 3.1 GB (48 heads × 128 forced).

VMDiffTestTinyFlux2: MODEL of ``comfy.model_base.Flux2`` (variant klein: no guidance embedding; dev: with one).
VMDiffTestTinyFlux2VAE: VAE that ComfyUI detects as FLUX.2's (128 latent channels, 16× scale).
VMDiffTestFlux2Text: FLUX.2-shaped text CONDITIONING (no pooled vector, tokens zero-padded to the context width) from
a text CONDITIONING, e.g. CLIPTextEncode on the tiny CLIP-L (a real tokenizer and encoder).
"""
from __future__ import annotations

import importlib.util
import sys

from comfy_api.latest import io

from .tiny_loaders import REPO_ROOT, _tiny_models


def _tiny_flux2():
    """vmdiff_cli/tiny_flux2.py imported by path (after vmdiff_cli/tiny_models.py, which it uses)."""
    _tiny_models()
    name = "vmdiff_test_tiny_flux2"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "vmdiff_cli" / "tiny_flux2.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class VMDiffTestTinyFlux2(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffTestTinyFlux2", category="VMDiff/testing",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                    io.Combo.Input("variant", options=["klein", "dev"], default="klein",
                                   tooltip="klein: no guidance embedding (FLUX.2 [klein]); dev: guidance embedding."),
                    io.Int.Input("context_dim", default=96, min=8, max=16384, optional=True)],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, seed, variant="klein", context_dim=96):
        return io.NodeOutput(_tiny_flux2().tiny_flux2(seed, variant=variant, context_dim=context_dim))


class VMDiffTestTinyFlux2VAE(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VMDiffTestTinyFlux2VAE", category="VMDiff/testing",
                         inputs=[io.Int.Input("seed", default=0, min=0, max=2**31 - 1)], outputs=[io.Vae.Output()])

    @classmethod
    def execute(cls, seed):
        return io.NodeOutput(_tiny_flux2().tiny_flux2_vae(seed))


class VMDiffTestFlux2Text(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffTestFlux2Text", category="VMDiff/testing",
            inputs=[io.Conditioning.Input("conditioning"), io.Int.Input("width", default=96, min=1, max=16384)],
            outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, conditioning, width=96):
        return io.NodeOutput(_tiny_flux2().flux2_text_conditioning(conditioning, width))


NODES = [VMDiffTestTinyFlux2, VMDiffTestTinyFlux2VAE, VMDiffTestFlux2Text]
