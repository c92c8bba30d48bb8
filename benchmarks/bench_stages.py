"""Benchmark: NFE and wall time of one Blending Noise and one Mixing Denoise, and the share of time spent
outside the DiT forward (the pack's glue + ComfyUI's sampling plumbing), measured side by side in one run.

    python -m benchmarks.bench_stages [--real-width] [--size 64] [--repeats 3]

Default model: the in-process tiny Flux (hidden 64). ``--real-width`` uses a FLUX.1-width stand-in (hidden 3072,
one double block) with 729-token Redux sets, so the forward dominates as on a real GPU run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack  # noqa: E402


class ForwardTimer:
    """Times every DiT forward through ComfyUI's model_function_wrapper hook."""

    def __init__(self, model):
        self.model = model.clone()
        self.model.set_model_unet_function_wrapper(self)
        self.calls, self.seconds = 0, 0.0

    def __call__(self, apply_model, args):
        start = time.perf_counter()
        out = apply_model(args["input"], args["timestep"], **args["c"])
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-width", action="store_true")
    parser.add_argument("--size", type=int, default=64, help="image width = height (multiple of 16)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    boot_comfy_inprocess()
    load_pack()
    from vmdiff_cli import tiny_models
    from vmdiff_pack.vmdiff_comfy.stages.blending_noise import run_blending_noise
    from vmdiff_pack.vmdiff_comfy.stages.sockets import ReduxTokens
    from vmdiff_pack.vmdiff_comfy.stages.mixing_denoise import run_mixing_denoise
    from vmdiff_pack.vmdiff_comfy.stages.settings import StageSettings
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    torch.manual_seed(0)
    if args.real_width:
        ctx, vec, n_tokens = 4096, 768, 729
        import comfy.model_management as mm
        import comfy.model_patcher
        import comfy.supported_models

        config = comfy.supported_models.Flux(dict(tiny_models.REAL_FLUX_CONFIG))
        config.set_inference_dtype(torch.float32, None)
        base = config.get_model({})
        tiny_models._fill_(base.diffusion_model, 0, "bench")
        model = comfy.model_patcher.ModelPatcher(base, load_device=mm.get_torch_device(),
                                                 offload_device=mm.unet_offload_device())
    else:
        ctx, vec, n_tokens = 64, 32, 16
        model = tiny_models.tiny_flux(seed=0, context_dim=ctx, vec_dim=vec)
    z1 = ReduxTokens(torch.randn(1, n_tokens, ctx), "bench")
    z2 = ReduxTokens(torch.randn(1, n_tokens, ctx), "bench")
    cond = tiny_models.tiny_flux_conditioning(vec_dim=vec, context_dim=ctx)

    rows = []
    for stage in ("Blending Noise", "Mixing Denoise"):
        walls, shares, nfe = [], [], None
        for _ in range(args.repeats + 1):  # first run warms up
            timer = ForwardTimer(model)
            start = time.perf_counter()
            if stage == "Blending Noise":
                out = run_blending_noise(timer.model, z1, z2, cond, seed=42, width=args.size, height=args.size,
                                         settings=StageSettings())
                eps_b = out.eps_b
            else:
                out = run_mixing_denoise(timer.model, eps_b, z1, z2, cond, settings=StageSettings(), alpha=0.5)
            wall = time.perf_counter() - start
            walls.append(wall)
            shares.append(1 - timer.seconds / wall)
            nfe = (out.nfe, timer.calls)
        walls, shares = walls[1:], shares[1:]
        rows.append((stage, nfe, statistics.median(walls), statistics.median(shares)))

    label = "FLUX-width stand-in (hidden 3072, 1 block)" if args.real_width else "tiny Flux (hidden 64)"
    print(f"model: {label}; image {args.size}²; Redux tokens {n_tokens}×{ctx}; median of {args.repeats} runs")
    print(f"{'stage':16} {'NFE (ops)':>9} {'forwards':>8} {'wall s':>8} {'outside forward':>16}")
    for stage, (nfe, calls), wall, share in rows:
        print(f"{stage:16} {nfe:9d} {calls:8d} {wall:8.3f} {100 * share:15.1f}%")
    return 0


if __name__ == "__main__":
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        raise SystemExit(main())
