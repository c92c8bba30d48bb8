"""The bf16_state parity knob: what the reference code rounds to bf16 (its pipeline runs in bfloat16)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Bf16Parity:
    """Off: everything float32 (ComfyUI's default). On: ε and the latent are rounded to bf16 after every step."""

    on: bool

    @property
    def state_dtype(self):
        return torch.bfloat16 if self.on else None

    def state(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16).float() if self.on else x

    def guidance(self, guidance: float) -> float:
        return guidance

    def velocity(self, velocity):
        return velocity


def bf16_parity(on: bool) -> Bf16Parity:
    return Bf16Parity(bool(on))
