"""VMDiff Random Noise: the seeded ε that Blending Noise starts from, handed straight to Mixing Denoise.

The paper's Baseline 1 (no Blending Noise): Mixing Denoise from plain random noise at α = 0.5."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import guard_inputs
from ..vmdiff_comfy.stages import settings
from ..vmdiff_comfy.stages.blending_noise import initial_noise
from ..vmdiff_comfy.stages.checks import check_size
from ..vmdiff_comfy.stages.sockets import noise_space_latent
from ..vmdiff_comfy.discovery import with_discovery

#: FLUX.1's latent channels (what Mixing Denoise checks eps_b against).
FLUX_LATENT_CHANNELS = 16


@with_discovery
@guard_inputs
class VMDiffRandomNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffRandomNoise",
            display_name="VMDiff Random Noise",
            category="VMDiff",
            description="Seeded random noise ε as a noise-space LATENT for VMDiff Mixing Denoise: the same ε that "
                        "VMDiff Blending Noise starts from at this seed and size, without blending (Baseline 1).",
            inputs=settings.inputs("seed", "width", "height"),
            outputs=[io.Latent.Output(display_name="eps", tooltip="ε in noise space, for VMDiff Mixing Denoise.")],
        )

    @classmethod
    def execute(cls, **widgets) -> io.NodeOutput:
        v = settings.with_defaults(("seed", "width", "height"), widgets)
        seed, width, height = v["seed"], v["width"], v["height"]
        check_size(width, height)
        eps = initial_noise(seed, FLUX_LATENT_CHANNELS, width, height)
        return io.NodeOutput(noise_space_latent(eps, seed=seed, width=width, height=height, source="random"),
                             ui=ui.PreviewText(f"ε: seed {seed}, {width}×{height} (no Blending Noise)"))
