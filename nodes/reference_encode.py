"""VMDiff Reference Encode: one image → a reference latent for FLUX.1 Kontext / FLUX.2 (what core's ReferenceLatent
takes), on the token-set socket so that Blending Noise, Mixing Denoise, Auto-Tune and Mix Tokens N accept it."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.stages.reference import encode_reference
from ..vmdiff_comfy.stages.sockets import ReduxTokensType
from ..vmdiff_comfy.discovery import with_discovery


@with_discovery
class VMDiffReferenceEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffReferenceEncode",
            display_name="VMDiff Reference Encode",
            category="VMDiff",
            description="Encodes one object image with the model's VAE into a reference latent, as core's VAE Encode → "
                        "ReferenceLatent does, for reference-image models (FLUX.1 Kontext, FLUX.2). Connect it where "
                        "VMDiff Redux Encode's tokens go: the stages then weigh the references by attention biases "
                        "(β in Blending Noise, α in Mixing Denoise) instead of mixing Redux tokens.",
            inputs=[
                io.Vae.Input("vae", tooltip="The model's VAE (FLUX.1 Kontext: ae.safetensors; FLUX.2: "
                                            "flux2-vae.safetensors)."),
                io.Image.Input("image", tooltip="One object image; alpha is dropped, grey is made RGB. Resize it "
                                                "first as core does (e.g. FluxKontextImageScale) if wanted."),
            ],
            outputs=[ReduxTokensType.Output(display_name="tokens",
                                            tooltip="The reference, for Blending Noise / Mixing Denoise / Auto-Tune "
                                                    "/ Mix Tokens N.")],
        )

    @classmethod
    def execute(cls, vae, image) -> io.NodeOutput:
        ref = encode_reference(vae, image)
        h, w = ref.info["image_size"]
        lat = ref.latents[0]
        text = f"reference latent {tuple(lat.shape[1:])} from a {w}×{h} image"
        if ref.info["note"]:
            text += f"; {ref.info['note']}"
        return io.NodeOutput(ref, ui=ui.PreviewText(text))
