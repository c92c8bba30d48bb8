"""VMDiffTestFluxText: a Flux-shaped text CONDITIONING from a CLIP-L-only one (tokens zero-padded to 4096 wide, as
ComfyUI's SD3 text encoder pads CLIP-L without T5; pooled vector kept). The stand-in models have no T5-XXL, so the
core two-Redux baseline (DualCLIPLoader → CLIPTextEncode) is run in the tests with this in place of its T5 path."""
import torch
from comfy_api.latest import io


class VMDiffTestFluxText(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffTestFluxText", category="VMDiff/testing",
            inputs=[io.Conditioning.Input("conditioning"), io.Int.Input("width", default=4096, min=1, max=16384)],
            outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, conditioning, width=4096):
        out = []
        for tokens, extras in conditioning:
            padded = torch.nn.functional.pad(tokens, (0, max(0, width - tokens.shape[-1])))
            out.append([padded, dict(extras)])
        return io.NodeOutput(out)


NODES = [VMDiffTestFluxText]
