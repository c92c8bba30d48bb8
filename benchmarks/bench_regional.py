"""Benchmark: the cost of part-level fusion — Mixing Denoise with a two-region α map (2 context blocks and the
joint attention mask) against the plain Mixing Denoise, measured side by side in one run, plus the token counts.

    python -m benchmarks.bench_regional [--real-width] [--size 128] [--steps 4] [--repeats 3] [--levels 2 3]

Default model: the in-process tiny Flux (hidden 64, 16 Redux tokens). ``--real-width``: a FLUX.1-width stand-in
(hidden 3072, one double block, 729-token Redux sets) whose forward dominates as on a real run. Both runs make the
same number of DiT passes (one per step); what grows is the joint sequence: L = K·729 + image tokens.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from benchmarks.bench_stages import ForwardTimer  # noqa: E402
from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack  # noqa: E402

REDUX_TOKENS = 729  # SigLIP-so400m at 384² → 27² Redux tokens per image


def sequence_lengths(size: int, levels: int, context_tokens: int = REDUX_TOKENS) -> tuple[int, int]:
    """(context tokens, joint sequence length) of one DiT pass at size² px with ``levels`` context blocks."""
    image_tokens = (size // 16) ** 2
    return levels * context_tokens, levels * context_tokens + image_tokens


def flux_width_stand_in():
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    from vmdiff_cli import tiny_models

    config = comfy.supported_models.Flux(dict(tiny_models.REAL_FLUX_CONFIG))
    config.set_inference_dtype(torch.float32, None)
    base = config.get_model({})
    tiny_models._fill_(base.diffusion_model, 0, "bench")
    return comfy.model_patcher.ModelPatcher(base, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-width", action="store_true")
    parser.add_argument("--size", type=int, default=128, help="image width = height (multiple of 16)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", type=int, nargs="+", default=[2], help="K values to compare with plain")
    args = parser.parse_args()

    boot_comfy_inprocess()
    load_pack()
    import comfy.utils
    from vmdiff_cli import tiny_models
    from vmdiff_pack.vmdiff_comfy.stages.mixing_denoise import run_mixing_denoise
    from vmdiff_pack.vmdiff_comfy.stages.regional import AlphaMap
    from vmdiff_pack.vmdiff_comfy.stages.settings import StageSettings
    from vmdiff_pack.vmdiff_comfy.stages.sockets import ReduxTokens

    comfy.utils.PROGRESS_BAR_ENABLED = False
    torch.manual_seed(0)
    ctx, vec, n_tokens = (4096, 768, REDUX_TOKENS) if args.real_width else (64, 32, 16)
    model = flux_width_stand_in() if args.real_width else tiny_models.tiny_flux(seed=0, context_dim=ctx, vec_dim=vec)
    z1, z2 = (ReduxTokens(torch.randn(1, n_tokens, ctx), "bench") for _ in range(2))
    cond = tiny_models.tiny_flux_conditioning(vec_dim=vec, context_dim=ctx)
    eps_b = torch.randn(1, 16, args.size // 8, args.size // 8)
    # a K-level map: K horizontal bands from 0 to 1 (every level in use)
    bands = [torch.linspace(0, 1, k).repeat_interleave(-(-args.size // k))[:args.size, None].expand(1, args.size,
                                                                                                  args.size)
             for k in args.levels]
    runs = [("plain", 1, None)] + [(f"{k} levels", k, AlphaMap(m, alpha_masked=0.8, levels=k))
                                   for k, m in zip(args.levels, bands)]

    walls, forward = {name: [] for name, _, _ in runs}, {name: [] for name, _, _ in runs}
    nfe, blocks = {}, {}
    for repeat in range(args.repeats + 1):  # the first round warms up; runs interleave so load drift hits all
        for name, k, extra in runs:
            timer = ForwardTimer(model)
            start = time.perf_counter()
            out = run_mixing_denoise(timer.model, eps_b, z1, z2, cond, settings=StageSettings(steps=args.steps),
                                     alpha=0.2, alpha_map=extra)
            if repeat:
                walls[name].append(time.perf_counter() - start)
                forward[name].append(timer.seconds)
            nfe[name], blocks[name] = timer.calls, len(out.block_alphas or [0.2])
    assert all(blocks[name] == k for name, k, _ in runs)
    rows = [(name, k, nfe[name], statistics.median(walls[name]), statistics.median(forward[name]))
            for name, k, _ in runs]

    label = "FLUX-width stand-in (hidden 3072, 1 double block)" if args.real_width else "tiny Flux (hidden 64)"
    print(f"model: {label}; image {args.size}²; {args.steps} steps; Redux {n_tokens}×{ctx}; "
          f"median of {args.repeats} runs")
    print(f"{'run':10} {'ctx tokens':>10} {'L':>6} {'NFE':>4} {'wall s':>8} {'forward s':>9} {'wall ratio':>10}")
    plain_wall = rows[0][3]
    image_tokens = (args.size // 16) ** 2
    for name, k, calls, wall, fwd in rows:
        print(f"{name:10} {k * n_tokens:10d} {k * n_tokens + image_tokens:6d} {calls:4d} {wall:8.3f} {fwd:9.3f} "
              f"{wall / plain_wall:10.2f}")
    print("\nFLUX.1 with 729-token Redux sets: joint sequence L and attention entries L² relative to plain")
    for size in (512, 1024):
        base = sequence_lengths(size, 1)[1]
        for k in (1, 2, 3):
            c, length = sequence_lengths(size, k)
            print(f"  {size}²  K={k}: context {c:5d}, L {length:5d}  (tokens ×{length / base:.2f}, "
                  f"attention ×{(length / base) ** 2:.2f})")
    return 0


if __name__ == "__main__":
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        raise SystemExit(main())
