"""Benchmark: the per-step cost of VMDiff's reference path against the model's own two-reference sampling, in one run.

    python -m benchmarks.bench_reference [--size 64] [--steps 4] [--repeats 3] [--analytic-only]

1. Analytic, from the real models' configs as ComfyUI runs them: tokens of the joint sequence (text + image +
   references) and attention FLOPs / logit entries per DiT pass at 512² and 1024², for FLUX.1 Kontext [dev] and
   FLUX.2 [klein] 4B, with one reference, with two (plain two-reference sampling) and on the reference path (two
   references, β / α as an additive bias on the references' keys: the same sequence, plus one add per biased logit).
2. Measured on the tiny stand-ins (vmdiff_cli/tiny_models ``tiny_flux`` in Kontext's layout, vmdiff_cli/tiny_flux2
   ``tiny_flux2``): DiT passes per step (NFE, counted through ComfyUI's model_function_wrapper), wall time per step
   and the joint sequence length seen by the attention, for core's one- and two-reference sampling (ReferenceLatent,
   euler, the family's σ grid) and the override path through ComfyUI's public
   ``transformer_options["optimized_attention_override"]``: the pack's ReferenceAttentionBias when this checkout has
   it (α = 0.5: zero bias; α = 0.3: a finite bias), else a zero key bias through PyTorch SDPA built here. max |Δ| is
   against plain two-reference sampling on the same seed.

Speed here is CPU time of tiny models: the figures that transfer to a GPU are NFE and the token / FLOP counts.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DiTShape:
    """What the attention cost of one DiT pass depends on. ``text_tokens``: what ComfyUI 0.8.0 feeds for a short
    prompt (FLUX.1: T5 padded to at least 256, comfy/text_encoders/flux.py; FLUX.2: padded to 512,
    comfy/model_base.py ``Flux2.extra_conds``). ``pixels_per_token``: VAE scale × patch (16 for both)."""

    name: str
    hidden: int
    heads: int
    double_blocks: int
    single_blocks: int
    text_tokens: int
    pixels_per_token: int = 16
    source: str = ""

    @property
    def blocks(self) -> int:
        return self.double_blocks + self.single_blocks


#: FLUX.1 Kontext [dev] has FLUX.1 [dev]'s layout (ComfyUI detects it as Flux: 24 heads × 128, 19 + 38 blocks);
#: FLUX.2 [klein] 4B: 24 heads × 128, 5 double + 20 single blocks (model card), one pass per step (distilled).
REAL_SHAPES = (
    DiTShape("FLUX.1 Kontext [dev]", 3072, 24, 19, 38, 256, source="ComfyUI 0.8.0 model_detection (Flux)"),
    DiTShape("FLUX.2 [klein] 4B", 3072, 24, 5, 20, 512, source="BFL model card: 5 double + 20 single blocks"),
)


def image_tokens(shape: DiTShape, width: int, height: int) -> int:
    return math.ceil(width / shape.pixels_per_token) * math.ceil(height / shape.pixels_per_token)


def attention_cost(shape: DiTShape, n: int) -> dict:
    """Per DiT pass over a joint sequence of n tokens: QKᵀ and AV are 2·n²·hidden FLOPs each per block (summed over
    heads); the logit entries are n²·heads per block."""
    return {"flops": 4 * n * n * shape.hidden * shape.blocks, "entries": n * n * shape.heads * shape.blocks}


def analytic_rows(sizes=(512, 1024)) -> list[dict]:
    """One row per (model, size, path). References are encoded at the output size (VMDiff Reference Encode)."""
    rows = []
    for shape in REAL_SHAPES:
        for size in sizes:
            text, image = shape.text_tokens, image_tokens(shape, size, size)
            ref = image  # one reference at the output size
            plain = attention_cost(shape, text + image + 2 * ref)
            for path, refs, biased in (("one reference", 1, 0), ("two references (core)", 2, 0),
                                       ("reference path (VMDiff)", 2, 2 * ref)):
                n = text + image + refs * ref
                cost = attention_cost(shape, n)
                # the bias adds one value per (query, biased key) logit per head and block; key-only, so the mask
                # itself is n keys wide (broadcast over queries and heads), not n × n
                bias_adds = n * biased * shape.heads * shape.blocks
                rows.append({"model": shape.name, "size": size, "path": path, "text": text, "image": image,
                             "references": refs * ref, "tokens": n, "attn_tflops": cost["flops"] / 1e12,
                             "entries_g": cost["entries"] / 1e9, "bias_adds_g": bias_adds / 1e9,
                             "vs_core": cost["flops"] / plain["flops"] + bias_adds / plain["flops"],
                             "mask_values": n if biased else 0})
    return rows


def print_analytic(rows) -> None:
    print("1. Analytic cost per DiT pass (real configs; references at the output size)")
    print(f"{'model':22s} {'size':>5s} {'path':25s} {'text':>5s} {'image':>6s} {'refs':>6s} {'tokens':>7s} "
          f"{'attn TFLOP':>10s} {'logits G':>9s} {'bias adds G':>11s} {'vs core 2-ref':>13s}")
    for r in rows:
        print(f"{r['model']:22s} {r['size']:>4d}² {r['path']:25s} {r['text']:>5d} {r['image']:>6d} "
              f"{r['references']:>6d} {r['tokens']:>7d} {r['attn_tflops']:>10.2f} {r['entries_g']:>9.2f} "
              f"{r['bias_adds_g']:>11.3f} {r['vs_core']:>12.4f}×")
    print("   one pass per step on every path (distilled models, cfg 1); the reference path's extra is one add per "
          "biased logit (keys of the references), about 1/(2·head_dim) = 1/256 of their QKᵀ FLOPs.\n")


# ----------------------------------------------------------------------------------------------------------------
# measured on the stand-ins

class ZeroKeyBias:
    """A zero additive bias on every key through PyTorch SDPA (the mask path a finite β / α takes), for checkouts
    without the pack's ReferenceAttentionBias."""

    def __call__(self, func, q, k, v, heads, **kwargs):
        import comfy.ldm.modules.attention as attention

        key_axis = 2 if kwargs.get("skip_reshape") else 1
        shape = (1, 1, 1, -1) if key_axis == 2 else (1, 1, -1)
        mask = torch.zeros(k.shape[key_axis], dtype=q.dtype, device=q.device).view(*shape)
        return attention.attention_pytorch(q, k, v, heads, **dict(kwargs, mask=mask))


def sequence_probe(inner=None):
    """An override that records the joint sequence length in ``probe.tokens`` (a list), then calls ``inner`` (another
    override) or the attention ComfyUI chose. A function, so ModelPatcher.clone's deepcopy of model_options keeps
    this one object (and its record)."""
    tokens = []

    def probe(func, q, k, v, heads, **kwargs):
        tokens.append(k.shape[2 if kwargs.get("skip_reshape") else 1])
        if inner is not None:
            return inner(func, q, k, v, heads, **kwargs)
        return func(q, k, v, heads, **kwargs)

    probe.tokens = tokens
    return probe


def pack_bias_override():
    """The pack's ReferenceAttentionBias (the reference-image path) and its SInp rule, if this checkout has them."""
    try:
        from vmdiff_pack.vmdiff_comfy.stages.reference import ReferenceAttentionBias
        from vmdiff_pack.vmdiff_ops.reference import sinp_reference_bias
    except ImportError:
        return None
    return ReferenceAttentionBias, sinp_reference_bias


def with_override(model, override):
    m = model.clone()
    options = m.model_options.setdefault("transformer_options", {})
    options["optimized_attention_override"] = override
    return m


def measure(model, cond, x, sigmas, seed: int = 0) -> dict:
    """One core sampling run (CFGGuider, euler, cfg 1): DiT passes per step, wall ms per step, ms per DiT forward."""
    import comfy.sample
    import comfy.samplers

    from benchmarks.bench_stages import ForwardTimer

    counter = ForwardTimer(model)
    counted = counter.model
    steps = len(sigmas) - 1
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    out = comfy.sample.sample_custom(counted, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas, cond, cond,
                                     x, seed=seed, disable_pbar=True)
    wall = time.perf_counter() - start
    return {"nfe_per_step": counter.calls / steps, "ms_per_step": 1000 * wall / steps,
            "ms_per_pass": 1000 * counter.seconds / max(counter.calls, 1), "out": out}


def stand_ins():
    from vmdiff_cli import tiny_flux2, tiny_models

    def text_flux2():
        clip = tiny_models.tiny_clip_l(0)
        cond = clip.encode_from_tokens_scheduled(clip.tokenize("A photo of owl creatively fused with jar."))
        return tiny_flux2.flux2_text_conditioning(cond, tiny_flux2.TINY_FLUX2_CONFIG["context_in_dim"])

    return [("tiny FLUX.1 Kontext-shaped", tiny_models.tiny_flux(0),
             tiny_models.tiny_flux_conditioning(0, text_tokens=8),
             16, 8, "flux1"),
            ("tiny FLUX.2 [klein]", tiny_flux2.tiny_flux2(0), text_flux2(), 128, 16, "flux2")]


def measured_rows(size: int, steps: int, repeats: int) -> list[dict]:
    from comfy_extras.nodes_edit_model import ReferenceLatent
    from vmdiff_pack.vmdiff_ops import family_sigma_grid

    pack = pack_bias_override()
    rows = []
    for name, model, text, channels, scale, family in stand_ins():
        side = size // scale
        gen = torch.Generator().manual_seed(1)
        r1, r2 = (torch.randn((1, channels, side, side), generator=gen) for _ in range(2))
        x = torch.zeros(1, channels, side, side)
        sigmas = family_sigma_grid(family, steps, size, size)

        def refs(*latents):
            cond = text
            for lat in latents:
                cond = ReferenceLatent.execute(cond, {"samples": lat}).result[0]
            return cond

        one, two = refs(r1), refs(r1, r2)
        paths = [("one reference (core)", None, one), ("two references (core)", None, two)]
        if pack is not None:
            bias_class, sinp = pack
            p = model.model.diffusion_model.patch_size
            counts = [math.ceil(r.shape[-2] / p) * math.ceil(r.shape[-1] / p) for r in (r1, r2)]
            for alpha in (0.5, 0.3):
                bias = torch.as_tensor(sinp(alpha), dtype=torch.float32).reshape(1, -1)
                paths.append((f"pack bias α={alpha}", bias_class(bias, counts), two))
        else:
            paths.append(("zero key bias (SDPA mask)", ZeroKeyBias(), two))
        plain, runs = None, {}
        for path, override, cond in paths:
            probe = sequence_probe(override)
            measure(with_override(model, probe), cond, x, sigmas)  # warm-up, and the joint sequence length
            runs[path] = {"tokens": max(probe.tokens) if probe.tokens else None, "results": []}
        for _ in range(repeats):  # round robin, so the load of a shared machine spreads over every path
            for path, override, cond in paths:
                runs[path]["results"].append(
                    measure(model if override is None else with_override(model, override), cond, x, sigmas))
        for path, _, _ in paths:
            results = runs[path]["results"]
            if path == "two references (core)":
                plain = results[0]["out"]
            rows.append({"model": name, "path": path, "tokens": runs[path]["tokens"],
                         "nfe_per_step": max(r["nfe_per_step"] for r in results),
                         "ms_per_step": min(r["ms_per_step"] for r in results),
                         "ms_per_pass": min(r["ms_per_pass"] for r in results), "out": results[0]["out"]})
        for row in rows:
            if row["model"] == name:
                row["max_abs_delta"] = float((row.pop("out") - plain).abs().max())
    return rows


def print_measured(rows, size: int, steps: int, repeats: int) -> None:
    print(f"2. Measured on the stand-ins ({size}² image, {steps} steps, CPU; fastest of {repeats} round-robin runs)")
    print(f"{'model':28s} {'path':26s} {'tokens':>7s} {'NFE/step':>9s} {'ms/step':>9s} {'ms/DiT pass':>12s} "
          f"{'max |Δ| vs core 2-ref':>22s}")
    for r in rows:
        tokens = "-" if r["tokens"] is None else str(r["tokens"])
        print(f"{r['model']:28s} {r['path']:26s} {tokens:>7s} {r['nfe_per_step']:>9.2f} {r['ms_per_step']:>9.2f} "
              f"{r['ms_per_pass']:>12.2f} {r['max_abs_delta']:>22.3g}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="stand-in image width = height (multiple of 16)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--analytic-only", action="store_true")
    args = parser.parse_args(argv)
    if args.size % 16:
        parser.error("--size must be a multiple of 16")

    print_analytic(analytic_rows())
    if args.analytic_only:
        return 0
    from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

    boot_comfy_inprocess()
    load_pack()
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    with torch.inference_mode():
        rows = measured_rows(args.size, args.steps, args.repeats)
    print_measured(rows, args.size, args.steps, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
