"""The bf16_state parity knob: what the reference code (diffusers' FluxPipeline in bfloat16) rounds to bf16."""
from __future__ import annotations

from dataclasses import dataclass

import torch

BF16 = torch.bfloat16


def bf16_timestep_sigma(sigma: float) -> float:
    """The σ whose DiT timestep 1000·σ equals the reference's: t = bf16(1000·σ), handed to the transformer as
    bf16(t / 1000), which multiplies it back by 1000 in bf16."""
    t = torch.tensor(1000.0 * sigma, dtype=torch.float32).to(BF16)
    return float(((t / 1000).to(BF16) * 1000).float() / 1000)  # the division in float32, as the DiT input


def bf16_guidance(guidance: float) -> float:
    """The reference's Flux guidance after the transformer's bf16 embedding input: bf16(bf16(γ)·1000) / 1000
    (e.g. 5 → 4.992)."""
    return float((torch.tensor(guidance, dtype=torch.float32).to(BF16) * 1000).float() / 1000)


@dataclass(frozen=True)
class Bf16Parity:
    """Off: everything float32 (ComfyUI's default). On: ε and the latent are rounded to bf16 after every step, and
    the DiT sees the reference's bf16-rounded timestep and guidance."""

    on: bool

    @property
    def state_dtype(self):
        return BF16 if self.on else None

    def state(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(BF16).float() if self.on else x

    def guidance(self, guidance: float) -> float:
        return bf16_guidance(guidance) if self.on else guidance

    def velocity(self, velocity):
        """``velocity(x, σ)`` evaluated at the reference's bf16 timestep (the Euler step still uses σ)."""
        if not self.on:
            return velocity
        return lambda x, sigma: velocity(x, bf16_timestep_sigma(sigma))


def bf16_parity(on: bool) -> Bf16Parity:
    return Bf16Parity(bool(on))
