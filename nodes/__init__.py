"""The VMDiff nodes: one file per node (or family of nodes), each only define_schema + a short execute."""
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
from .reference_encode import VMDiffReferenceEncode
from .save_image import VMDiffSaveImage
from .stage_settings import VMDiffStageSettings
from .score_loaders import LOADER_NODES
from .similarity_score import VMDiffScorer, VMDiffSimilarityScore

# a node with numeric inputs carries @guard_inputs in its file (vmdiff_comfy/errors.py): ranges, typed or linked;
# @with_discovery sets the newer Schema fields (search aliases, …) where the running ComfyUI has them
NODES = [
    VMDiffReduxEncode, VMDiffFusionPrompt, VMDiffBlendingNoise, VMDiffMixingDenoise, VMDiffAutoTune, VMDiffSaveImage,
    VMDiffMagicMix, *LOADER_NODES, VMDiffScorer, VMDiffSimilarityScore, VMDiffRandomNoise, VMDiffMixTokensN,
    VMDiffStageSettings, VMDiffClipFromComfy, VMDiffReferenceEncode]
register_routes()
