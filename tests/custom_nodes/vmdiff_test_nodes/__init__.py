"""Test-only ComfyUI nodes, loaded by the server tests beside the pack (never shipped to users).

VMDiffTestForcedScorer: a VMDIFF_SCORER whose scores follow a script (cycled over the scorer calls), so a search
through the real server takes known branches and its number of candidates can be asserted.
tiny_loaders.py: loaders returning ComfyUI's real classes built tiny in-process, and reliability probes.
flux_text.py: a Flux-shaped text CONDITIONING from a CLIP-L-only one (the stand-ins have no T5-XXL).
flux2_loaders.py: tiny FLUX.2 model / VAE and FLUX.2-shaped text.
"""
from comfy_api.latest import ComfyExtension, io

from .flux2_loaders import NODES as FLUX2_NODES
from .flux_text import NODES as FLUX_TEXT_NODES
from .scorers import ForcedScorer
from .tiny_loaders import NODES as TINY_NODES


class VMDiffTestForcedScorer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffTestForcedScorer",
            category="VMDiff/testing",
            inputs=[io.String.Input("scores", default="1.0", tooltip="Comma-separated scores, cycled per call.")],
            outputs=[io.Custom("VMDIFF_SCORER").Output(display_name="scorer")],
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, scores):
        return io.NodeOutput(ForcedScorer([float(s) for s in scores.split(",")]))


class TestExtension(ComfyExtension):
    async def get_node_list(self):
        return [VMDiffTestForcedScorer, *TINY_NODES, *FLUX_TEXT_NODES, *FLUX2_NODES]


async def comfy_entrypoint():
    return TestExtension()
