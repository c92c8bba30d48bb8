"""VMDiff Mix Tokens N: N-object fusion. Mixes 2–4 Redux token sets with weights into one ready SInp for Mixing
Denoise, and concatenates them into the N-object SCat for Blending Noise (their tokens_2 left unconnected)."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import guard_inputs
from ..vmdiff_comfy.stages.reference import describe
from ..vmdiff_comfy.stages.sockets import ReduxTokensType
from ..vmdiff_comfy.stages.tokens import mix_token_sets
from ..vmdiff_comfy.discovery import with_discovery
from ..vmdiff_ops import MIX_RULES_N

MAX_SETS = 4


@with_discovery
@guard_inputs
class VMDiffMixTokensN(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffMixTokensN",
            display_name="VMDiff Mix Tokens N",
            category="VMDiff",
            description="Fuses 2–4 objects: an order-invariant weighted mix of their Redux token sets (slerp: "
                        "spherical mean of directions, norms averaged; lerp: weighted mean). Weights are normalised "
                        "to sum to one over the connected sets. Connect 'tokens' to Mixing Denoise's tokens_1 and "
                        "'concat' to Blending Noise's tokens_1, leaving their tokens_2 unconnected.",
            inputs=[
                ReduxTokensType.Input("tokens_1"),
                ReduxTokensType.Input("tokens_2"),
                ReduxTokensType.Input("tokens_3", optional=True),
                ReduxTokensType.Input("tokens_4", optional=True),
                *[io.Float.Input(f"weight_{k}", default=1.0, min=0.0, max=100.0, step=0.01,
                                 tooltip=f"Weight of tokens_{k} (normalised over the connected sets).")
                  for k in range(1, MAX_SETS + 1)],
                io.Combo.Input("mix_rule", options=list(MIX_RULES_N), default="slerp"),
            ],
            outputs=[
                ReduxTokensType.Output(display_name="tokens", tooltip="SInp: the mixed set, for Mixing Denoise."),
                ReduxTokensType.Output(display_name="concat", tooltip="SCat of all sets, for Blending Noise."),
            ],
        )

    @classmethod
    def execute(cls, tokens_1, tokens_2, tokens_3=None, tokens_4=None, weight_1=1.0, weight_2=1.0, weight_3=1.0,
                weight_4=1.0, mix_rule="slerp") -> io.NodeOutput:
        given = [(1, tokens_1, weight_1), (2, tokens_2, weight_2), (3, tokens_3, weight_3), (4, tokens_4, weight_4)]
        sets = [(k, t) for k, t, _ in given if t is not None]
        sinp, scat, w = mix_token_sets(sets, [wk for _, t, wk in given if t is not None], mix_rule)
        text = f"{mix_rule} of {len(sets)} sets, weights " + ", ".join(
            f"tokens_{k} {wk:.3f}" for (k, _), wk in zip(sets, w)) + f"; concat {describe(scat)}"
        return io.NodeOutput(sinp, scat, ui=ui.PreviewText(text))
