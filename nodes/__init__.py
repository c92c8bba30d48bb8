"""The VMDiff nodes: one file per node (or family of nodes), each only define_schema + a short execute."""
from ..vmdiff_comfy.discovery import with_discovery
from ..vmdiff_comfy.stages.checks import guard_inputs
from ..vmdiff_comfy.stages.presets import register_routes
from .auto_tune import VMDiffAutoTune
from .blending_noise import VMDiffBlendingNoise
from .clip_from_comfy import VMDiffClipFromComfy
from .magicmix import VMDiffMagicMix
from .mix_tokens_n import VMDiffMixTokensN
from .mixing_denoise import VMDiffMixingDenoise
from .prompt import VMDiffFusionPrompt
from .random_noise import VMDiffRandomNoise
from .redux_encode import VMDiffReduxEncode
from .save_image import VMDiffSaveImage
from .stage_settings import VMDiffStageSettings
from .score_loaders import LOADER_NODES
from .similarity_score import VMDiffScorer, VMDiffSimilarityScore

NODES = [with_discovery(guard_inputs(node)) for node in (
    VMDiffReduxEncode, VMDiffFusionPrompt, VMDiffBlendingNoise, VMDiffMixingDenoise, VMDiffAutoTune, VMDiffSaveImage,
    VMDiffMagicMix, *LOADER_NODES, VMDiffScorer, VMDiffSimilarityScore, VMDiffRandomNoise, VMDiffMixTokensN,
    VMDiffStageSettings, VMDiffClipFromComfy)]  # every numeric input's range and finiteness, typed or linked;
# search aliases and the other newer Schema fields where the running ComfyUI has them (vmdiff_comfy/discovery.py)
register_routes()
