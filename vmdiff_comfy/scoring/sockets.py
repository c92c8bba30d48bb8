"""The ComfyUI socket types of the scoring models (loader outputs, Scorer inputs)."""
from comfy_api.latest import io

DinoType = io.Custom("VMDIFF_DINOV2")
OpenClipType = io.Custom("VMDIFF_OPEN_CLIP")
GroundingDinoType = io.Custom("VMDIFF_GROUNDING_DINO")
SamType = io.Custom("VMDIFF_SAM")
