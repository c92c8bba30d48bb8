"""ComfyUI glue: one file per VMDiff stage."""
from .blending_noise import VMDiffBlendingNoise
from .mixing_denoise import VMDiffMixingDenoise
from .prompt import VMDiffFusionPrompt
from .redux_encode import VMDiffReduxEncode

NODES = [VMDiffReduxEncode, VMDiffFusionPrompt, VMDiffBlendingNoise, VMDiffMixingDenoise]
