"""A scoring model under ComfyUI's model management: each model is wrapped in a ``ModelPatcher`` and loaded with
``load_model_gpu`` right before it runs, so ComfyUI can offload it when FLUX needs the memory."""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.model_patcher

from ...vmdiff_ops import score as score_ops
from ..errors import VMDiffInputError


class ManagedModule(torch.nn.Module):
    """Holds a library model for a ModelPatcher (which sets ``.device`` on what it manages: Hugging Face models have
    a read-only ``device`` property, so the patcher gets this plain holder instead)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner.eval().requires_grad_(False)
        self.device = None


class ScorerModel:
    """A scoring model under ComfyUI's model management, with call counters (to check encode-once)."""

    kind = "model"

    def __init__(self, module: torch.nn.Module | None, name: str, info: dict | None = None, patcher=None,
                 processor=None):
        """``patcher``: an existing ModelPatcher to run under (then ``module`` is not used); ``processor``: the
        transformers processor that prepares its inputs and post-processes its outputs, if it has one."""
        self.patcher = patcher if patcher is not None else comfy.model_patcher.ModelPatcher(
            ManagedModule(module), load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device())
        self.name = name
        self.processor = processor
        self.info = info or {}
        self.calls = 0
        self.images = 0

    def ready(self) -> torch.nn.Module:
        """Load to the compute device (evicting others if needed) and return the library model. Called before every
        pass, so Cancel stops scoring between model passes (library models have no comfy ops that check it)."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        comfy.model_management.load_model_gpu(self.patcher)
        return self.patcher.model.inner

    @property
    def device(self) -> torch.device:
        return self.patcher.load_device

    def count(self, n_images: int) -> None:
        self.calls += 1
        self.images += n_images

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def prepare_views(views: list[torch.Tensor], size: int, mode: str, short_side: int | None = None) -> torch.Tensor:
    """Crops of any sizes, each (3, h, w) in [0, 1] → one (B, 3, size, size) batch: ``squash`` (the reference:
    size × size, no crop) or ``center_crop`` (the libraries' own preprocessing: shorter side to ``short_side``,
    centre crop to size)."""
    if mode == "squash":
        resized = [score_ops.squash_resize(v[None], size) for v in views]
    elif mode == "center_crop":
        resized = [score_ops.center_crop_resize(v[None], size, short_side or size) for v in views]
    else:
        raise VMDiffInputError(f"resize: unknown mode {mode!r}; expected squash or center_crop")
    return torch.cat(resized)

