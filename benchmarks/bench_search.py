"""Benchmark: the cost of one VMDiff fusion search, ours vs the reference code's schedule
(docs/method.md, "Efficient Adaptive Adjustment" and "Cost").

    python -m benchmarks.bench_search [--wall] [--size 32]

1. Sample-NFE (DiT forward passes per latent) of the reference schedule — α stage: 10 golden iterations × 2 fresh
   points (batch 2) on one ε_b; β stage: per iteration 2 Blending Noise + 2 Mixing Denoise — against EAA as
   implemented here (golden points reused, ε_b cached per β, no β evaluated twice), with and without
   ``search_steps``. Both run against the same forced score S(α, β), so they take the same branches: "typical"
   clears the 2.4 threshold after the α stage, "worst" does not and runs the β stage.
2. ``--wall``: wall time of both schedules rendering every candidate for real on the tiny in-process Flux
   (same stage functions, same forced scores), measured side by side in one run.
The reference's wasted T5-XXL encodes and duplicate scorer encodes are not modelled (they cost no DiT pass).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
from vmdiff_cli.comfy_env import load_pack  # noqa: E402

load_pack()
from vmdiff_pack.vmdiff_ops import PRESETS, SearchOptions, efficient_adaptive_adjustment  # noqa: E402

PHI = (1 + math.sqrt(5)) / 2
STEPS, T_DEN = 20, 10


# S of the β stage on the grid 0.5, 0.7, …, 3.5: a bumpy profile under which the reference's β stage runs its
# maximum of 6 iterations (its 926-NFE worst case; reference run_single.py:602-691).
WORST_BETA_PROFILE = [0.49, 0.31, 0.47, 0.81, 0.88, 0.81, 0.19, 1.0, 0.63, 0.08, 0.73, 0.99, 0.4, 0.68, 0.32, 0.21]


def forced_score(case: str):
    """S(α, β1, β2): unimodal in α (peak 0.53), above 2.4 in the typical case; in the worst case under 2.4
    everywhere, with the bumpy WORST_BETA_PROFILE over the weaker side's β."""
    if case == "typical":
        return lambda a, b1, b2: 2.5 - (a - 0.53) ** 2
    profile = {round(0.5 + 0.2 * k, 1): s for k, s in enumerate(WORST_BETA_PROFILE)}
    return lambda a, b1, b2: 1.0 - (a - 0.53) ** 2 if b1 == b2 == 1.0 else 0.5 * profile[round(b2, 1)]


TERMS = {"D1": 0.6, "T1": 0.3, "D2": 0.5, "T2": 0.3}  # image 1 is the stronger side (D + 3.13·T)


def reference_schedule(render, blend):
    """The reference code's search (run_single.py §6), re-implemented plainly: render(α, β1, β2) → S after
    blend(β1, β2) made its ε_b. Returns the number of candidates."""
    blend(1.0, 1.0)
    lo, hi, n = 0.4, 0.6, 0
    alpha, best = None, -math.inf
    for _ in range(15):
        if hi - lo <= 0.002:
            break
        m1, m2 = round(lo + (hi - lo) / PHI, 5), round(hi - (hi - lo) / PHI, 5)
        s1, s2 = render(m1, 1.0, 1.0), render(m2, 1.0, 1.0)
        n += 2
        if s1 >= s2:
            lo, offered = m2, (m1, s1)
        else:
            hi, offered = m1, (m2, s2)
        if offered[1] > best:
            alpha, best = offered
    if best > 2.4:
        return n
    lo, hi, evaluated = 0.5, 3.5, set()
    for _ in range(15):
        if hi - lo <= 0.5:
            break
        grid = torch.arange(max(lo, 0.5), min(hi + 0.1, 3.5), 0.2, dtype=torch.float32).tolist()
        candidates = [g for g in grid if g not in evaluated]
        if not candidates:
            break
        t1, t2 = lo + (hi - lo) / PHI, hi - (hi - lo) / PHI
        m1 = min(candidates, key=lambda g: abs(g - t1))
        m2 = min(candidates, key=lambda g: abs(g - t2))
        evaluated.update((m1, m2))
        blend(0.5, m1)
        blend(0.5, m2)
        s1, s2 = render(alpha, 0.5, m1), render(alpha, 0.5, m2)
        n += 2
        if s1 >= s2:
            lo = m2
        else:
            hi = m1
    return n


def nfe_table() -> list[tuple]:
    """(case, schedule, candidates, sample-NFE, DiT forward passes) for the reference and our variants."""
    rows = []
    for case in ("typical", "worst"):
        score = forced_score(case)
        counts = {"nfe": 0, "calls": 0, "renders": 0}

        def blend(b1, b2):
            counts["nfe"] += 2 * (T_DEN + 1)
            counts["calls"] += 2 * (T_DEN + 1)

        def render(a, b1, b2):
            counts["nfe"] += STEPS
            counts["renders"] += 1
            return score(a, b1, b2)

        reference_n = reference_schedule(render, blend)
        # the reference renders its candidates in pairs, one batch of 2 per pair (run_single.py:568-586)
        rows.append((case, "reference schedule", reference_n, counts["nfe"],
                     counts["calls"] + counts["renders"] // 2 * STEPS))
        for search_steps in (0, 8, 6):
            for batch in ((1, 3, 7) if search_steps != 6 else (1,)):
                rows.append((case, f"ours, search_steps={search_steps or STEPS}, batch {batch}",
                             *ours_nfe(score, PRESETS["official"], search_steps, batch)))
    return rows


def ours_nfe(score, options: SearchOptions, search_steps: int, batch_size: int = 1) -> tuple[int, int, int]:
    """(candidates, sample-NFE, DiT passes) of EAA with ``batch_size`` candidates per DiT batch, counted the way
    nodes/auto_tune.CandidateRenderer batches them: missing ε_b in one Blending Noise batch, then one Mixing
    Denoise batch."""
    steps = search_steps or STEPS
    t_den = min(round(T_DEN * steps / STEPS), steps - 2)
    blended, cost = set(), {"nfe": 0, "calls": 0}

    def evaluate_batch(candidates):
        missing = {(b1, b2, seed) for _, b1, b2, seed in candidates} - blended
        blended.update(missing)
        if missing:
            cost["calls"] += 2 * (t_den + 1)
            cost["nfe"] += 2 * (t_den + 1) * len(missing)
        cost["calls"] += steps
        cost["nfe"] += steps * len(candidates)
        return [(score(a, b1, b2), TERMS, None) for a, b1, b2, _ in candidates]

    _, history = efficient_adaptive_adjustment(lambda *c: evaluate_batch([c])[0], 42, options,
                                               evaluate_batch=evaluate_batch, batch_size=batch_size)
    if search_steps:  # the winner rendered at full steps
        cost["nfe"] += 2 * (T_DEN + 1) + STEPS
        cost["calls"] += 2 * (T_DEN + 1) + STEPS
    return len(history), cost["nfe"], cost["calls"]


def timed(run, repeats: int) -> tuple[float, int]:
    """Median wall time of ``repeats`` runs after one warm-up run, and what the run returned (its NFE)."""
    result = run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return sorted(seconds)[len(seconds) // 2], result


def wall_times(size: int, repeats: int) -> list[tuple]:
    from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

    boot_comfy_inprocess()
    load_pack()
    import comfy.utils
    from vmdiff_cli import tiny_models
    from vmdiff_pack.vmdiff_comfy.stages.auto_tune import CandidateRenderer, auto_tune
    from vmdiff_pack.vmdiff_comfy.stages.settings import StageSettings
    from vmdiff_pack.vmdiff_comfy.stages.sockets import ReduxTokens

    comfy.utils.PROGRESS_BAR_ENABLED = False
    model, vae = tiny_models.tiny_flux(), tiny_models.tiny_vae()
    cond = tiny_models.tiny_flux_conditioning()
    z = [ReduxTokens(torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(s)), "bench") for s in (1, 2)]
    settings = StageSettings()
    rows = []
    for case in ("typical", "worst"):
        score = forced_score(case)
        # reference: no ε_b cache (BNoise per β per iteration), both golden points fresh every iteration
        renderer = CandidateRenderer(model, *z, cond, vae, width=size, height=size)
        state = {}

        def blend(b1, b2):
            renderer.eps_cache.clear()
            state[(b1, b2)] = renderer.eps_b([(b1, b2)], 42, settings)[0]

        def render(a, b1, b2):
            renderer.eps_cache[(b1, b2, 42, settings.steps, settings.t_den_step)] = state[(b1, b2)]
            renderer.render(a, b1, b2, 42, settings)
            return score(a, b1, b2)

        def run_reference():
            renderer.nfe = 0
            reference_schedule(render, blend)
            return renderer.nfe

        reference = timed(run_reference, repeats)

        class ParamScorer:  # the forced score of each candidate being rendered, read from the renderer's call
            def score(self, images):
                return [dict(TERMS, score=score(*c[:3])) for c in current]

        current = []
        original_render_many = CandidateRenderer.render_many

        def tracking_render_many(self, candidates, s):
            current[:] = candidates
            return original_render_many(self, candidates, s)

        CandidateRenderer.render_many = tracking_render_many
        try:
            for search_steps, batch in ((0, 1), (8, 1), (8, 3)):
                ours = timed(lambda: auto_tune(model, *z, cond, vae, ParamScorer(), seed=42,
                                               options=PRESETS["official"], settings=settings, width=size,
                                               height=size, search_steps=search_steps,
                                               candidates_per_batch=batch).nfe, repeats)
                rows.append((case, reference, search_steps or settings.steps, batch, *ours))
        finally:
            CandidateRenderer.render_many = original_render_many
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wall", action="store_true", help="also time both schedules on the tiny model")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'case':8} {'schedule':36} {'candidates':>10} {'sample-NFE':>10} {'vs ref':>7} {'DiT passes':>10} "
          f"{'vs ref':>7}")
    reference = {}
    for case, name, candidates, nfe, calls in nfe_table():
        reference.setdefault(case, (nfe, calls))
        print(f"{case:8} {name:36} {candidates:10d} {nfe:10d} {nfe / reference[case][0]:7.1%} {calls:10d} "
              f"{calls / reference[case][1]:7.1%}")
    if args.wall:
        with torch.inference_mode():
            rows = wall_times(args.size, args.repeats)
        print(f"\nwall time on the tiny Flux ({args.size}², 20 steps), median of {args.repeats} runs after a warm-up:")
        for case, (ref_s, ref_nfe), steps, batch, ours_s, ours_nfe in rows:
            print(f"{case:8} reference {ref_s:7.2f} s ({ref_nfe} NFE)   ours search_steps={steps:2d} batch {batch} "
                  f"{ours_s:7.2f} s ({ours_nfe} NFE)   ratio {ours_s / ref_s:5.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
