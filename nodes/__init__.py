"""ComfyUI glue: one file per VMDiff stage."""
from .auto_tune import VMDiffAutoTune, register_routes
from .blending_noise import VMDiffBlendingNoise
from .magicmix import VMDiffMagicMix
from .mixing_denoise import VMDiffMixingDenoise
from .prompt import VMDiffFusionPrompt
from .redux_encode import VMDiffReduxEncode
from .save_image import VMDiffSaveImage

NODES = [VMDiffReduxEncode, VMDiffFusionPrompt, VMDiffBlendingNoise, VMDiffMixingDenoise, VMDiffAutoTune,
         VMDiffSaveImage]
NODES.append(VMDiffMagicMix)
from .score_loaders import LOADER_NODES  # noqa: E402
from .similarity_score import VMDiffScorer, VMDiffSimilarityScore  # noqa: E402

NODES += LOADER_NODES + [VMDiffScorer, VMDiffSimilarityScore]
from .mix_tokens_n import VMDiffMixTokensN  # noqa: E402
from .random_noise import VMDiffRandomNoise  # noqa: E402

NODES += [VMDiffRandomNoise, VMDiffMixTokensN]
register_routes()
