"""Auto-Tune (EAA): the candidate renderer (Blending Noise → Mixing Denoise → VAE decode, batched and cached) and
the search driver over rendered, scored candidates."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import comfy.model_management
import comfy.utils

from ...vmdiff_ops import Evaluation, SearchOptions, beta_grid, efficient_adaptive_adjustment
from ...vmdiff_ops.search import INV_PHI
from .blending_noise import run_blending_noise
from .mixing_denoise import run_mixing_denoise
from ..errors import VMDiffInputError
from .checks import OVERFLOW_FIX, as_float32, check_finite_output
from .settings import StageSettings, grid_problems, ops_errors

#: The score terms of a candidate whose image is NaN / inf (an overflowing model): the worst score, never scored.
NON_FINITE_TERMS = {k: math.nan for k in ("score", "D1", "D2", "T1", "T2", "n1", "n2")}


class CandidateRenderer:
    """Renders candidates (α, β1, β2, seed) to decoded images, several in one DiT batch if asked; ε_b is computed
    once per (β1, β2, seed, grid) and reused. ``nfe`` counts latents through the DiT (sample-NFE), ``dit_calls``
    the batched forward passes (the sequential cost)."""

    def __init__(self, model, tokens_1, tokens_2, conditioning, vae, *, width: int, height: int, callback=None):
        self.model, self.tokens, self.conditioning, self.vae = model, (tokens_1, tokens_2), conditioning, vae
        self.size = dict(width=width, height=height)
        self.callback = callback
        self.eps_cache: dict[tuple, torch.Tensor] = {}
        self.nfe = self.dit_calls = self.rendered = 0

    def _count(self, nfe: int, batch: int) -> None:
        self.nfe += nfe
        self.dit_calls += nfe // batch

    def eps_b(self, betas: list[tuple[float, float]], seed: int, s: StageSettings) -> list[torch.Tensor]:
        """ε_b for each (β1, β2) at one seed; the missing ones in one batched Blending Noise run."""
        keys = [(b1, b2, seed, s.steps, s.t_den_step) for b1, b2 in betas]
        missing = list(dict.fromkeys(k for k in keys if k not in self.eps_cache))
        if missing:
            # ε_b of β = (1, 1) is shared by every α candidate of the round: a NaN / inf there stops the search at
            # once, named (a β-stage ε_b belongs to one candidate: it is skipped, scored as the worst)
            shared = any((k[0], k[1]) == SHARED_BETAS for k in missing)
            out = run_blending_noise(self.model, *self.tokens, self.conditioning, seed=seed, **self.size, settings=s,
                                     beta_1=[k[0] for k in missing], beta_2=[k[1] for k in missing],
                                     callback=self.callback,
                                     node=f"VMDiff Auto-Tune: the search stops, as the ε_b every α candidate "
                                          f"shares (Blending Noise of seed {seed}, β = (1, 1)) is non-finite"
                                     if shared else None)
            self._count(out.nfe, len(missing))
            self.eps_cache.update((k, out.eps_b[i:i + 1]) for i, k in enumerate(missing))
        return [self.eps_cache[k] for k in keys]

    def render_many(self, candidates: list[tuple[float, float, float, int]], s: StageSettings) -> list[tuple]:
        """[(latent, image)] for each candidate, all Mixing Denoise runs in one batch (one seed per call)."""
        results: dict[int, tuple] = {}
        for seed in dict.fromkeys(c[3] for c in candidates):
            group = [i for i, c in enumerate(candidates) if c[3] == seed]
            eps_b = torch.cat(self.eps_b([candidates[i][1:3] for i in group], seed, s))
            watch = PassWatch() if self.rendered == 0 and not results else None  # the search's first candidate
            out = run_mixing_denoise(self.model, eps_b, *self.tokens, self.conditioning, settings=s,
                                     alpha=[candidates[i][0] for i in group], seed=seed, callback=self.callback,
                                     node=None, on_pass=watch)
            if watch is not None:
                watch.stop_if_all_bad(candidates[group[0]])
            self._count(out.nfe, len(group))
            images = as_float32("vae", self.vae.decode(out.latent))  # a VAE run in bf16 / fp16 may decode so
            results.update((i, (out.latent[k:k + 1], images[k:k + 1])) for k, i in enumerate(group))
        self.rendered += len(candidates)
        return [results[i] for i in range(len(candidates))]

    def render(self, alpha: float, beta_1: float, beta_2: float, seed: int, s: StageSettings):
        return self.render_many([(alpha, beta_1, beta_2, seed)], s)[0]


#: The β pair of the α stage, whose ε_b (per seed) every α candidate shares.
SHARED_BETAS = (1.0, 1.0)


class PassWatch:
    """Which model passes of the first rendered candidate (batch element 0) were non-finite:
    when every one was, the model overflows whatever α is (every later candidate runs the same model from the
    same ε_b), so the search stops at once instead of rendering every candidate first."""

    def __init__(self):
        self.passes: list[tuple[int, str, float, bool]] = []  # (pass, phase, σ, finite)

    def __call__(self, number: int, phase: str, sigma: float, x0: torch.Tensor) -> None:
        self.passes.append((number, phase, sigma, bool(torch.isfinite(x0[:1]).all())))

    def stop_if_all_bad(self, candidate: tuple) -> None:
        if not self.passes or any(finite for *_, finite in self.passes):
            return
        number, phase, sigma, _ = self.passes[0]
        alpha, beta_1, beta_2, seed = candidate
        raise VMDiffInputError(
            f"VMDiff Auto-Tune: every model pass of the first candidate (α = {alpha:.4f}, β = ({beta_1:g}, "
            f"{beta_2:g}), seed {seed}) is NaN or infinite, from model pass {number} of {len(self.passes)} ({phase} "
            f"phase, σ = {sigma:.4f}) on, although its ε_b is finite; every later candidate runs the same model, so "
            f"the search stops here instead of rendering them all; {OVERFLOW_FIX}")


def expected_evaluations(o: SearchOptions) -> tuple[int, int]:
    """Upper bounds of α-stage and β-stage candidates per round (sizes the progress bar)."""
    brackets = min(o.alpha_max_iter, math.ceil(math.log(o.alpha_tol / (o.alpha_max - o.alpha_min)) / math.log(INV_PHI)))
    return brackets + 1, len(beta_grid(o.beta_min, o.beta_max, o.beta_step))


@dataclass
class AutoTuneResult:
    """The search's winner (``best``, rendered at full steps: ``latent``, ``image``, ``final_terms``), every
    candidate it consumed (``records``, ``images``), and its cost."""

    best: Evaluation
    latent: torch.Tensor
    image: torch.Tensor
    final_terms: dict
    records: list[dict]
    best_index: int
    images: list[torch.Tensor]
    nfe: int
    dit_calls: int
    unused_candidates: int
    search: StageSettings


def auto_tune(model, tokens_1, tokens_2, conditioning, vae, scorer, *, seed: int, options: SearchOptions,
              settings: StageSettings, width: int, height: int, search_steps: int = 0, node_id=None,
              candidates_per_batch: int = 1, to_preview=None) -> AutoTuneResult:
    """EAA over rendered, scored candidates; the winner is re-rendered at full steps if the search used fewer.
    ``to_preview(image) -> PIL image`` shows each consumed candidate on the progress bar.
    ``candidates_per_batch`` > 1 renders the candidates the search needs next, and those it may need after them,
    in one DiT batch (same result; fewer sequential passes, more latents through the DiT)."""
    search = settings.at_steps(search_steps) if search_steps else settings
    n_alpha, n_beta = expected_evaluations(options)
    bnoise = 2 * (search.t_den_step + 1)
    most_steps = options.rounds * (bnoise + n_alpha * search.steps + n_beta * (bnoise + search.steps))
    if search is not settings:
        most_steps += 2 * (settings.t_den_step + 1) + settings.steps
    pbar = comfy.utils.ProgressBar(most_steps, node_id=node_id)  # an upper bound; filled at the end
    renderer = CandidateRenderer(model, tokens_1, tokens_2, conditioning, vae, width=width, height=height,
                                 callback=lambda *_: pbar.update(1))
    images: list[torch.Tensor] = []

    def evaluate_batch(candidates):
        comfy.model_management.throw_exception_if_processing_interrupted()
        rendered = renderer.render_many(list(candidates), search)
        finite = [i for i, (_, image) in enumerate(rendered) if torch.isfinite(image).all()]
        scores = dict(zip(finite, scorer.score(torch.cat([rendered[i][1] for i in finite])))) if finite else {}
        terms = [scores.get(i, NON_FINITE_TERMS) for i in range(len(rendered))]  # NaN: the worst score (search)
        return [(t["score"], t, payload) for t, payload in zip(terms, rendered)]

    on_evaluation = _evaluation_reporter(images, pbar, node_id, to_preview)  # the candidates the search consumed
    with ops_errors("VMDiff Auto-Tune: "):  # e.g. every α candidate non-finite (a NaN model): named, not raw
        best, history = efficient_adaptive_adjustment(lambda *c: evaluate_batch([c])[0], seed, options,
                                                      on_evaluation=on_evaluation, evaluate_batch=evaluate_batch,
                                                      batch_size=candidates_per_batch)
    unused_candidates = renderer.rendered - len(history)  # rendered ahead, never asked for by the search
    latent, image = best.payload
    final_terms = best.terms
    if search.steps != settings.steps:  # the search ran on a coarser grid: render the winner for real
        latent, image = renderer.render(best.alpha, best.beta_1, best.beta_2, best.seed, settings)
        final_terms = scorer.score(image)[0] if torch.isfinite(image).all() else NON_FINITE_TERMS
    check_finite_output("VMDiff Auto-Tune", f"the image of the best of {len(history)} candidates (every one was "
                        f"non-finite)" if not math.isfinite(best.score) else "the final image", image)
    records = [dict(e.record(), index=i, searched_beta=_searched_beta(e, options)) for i, e in enumerate(history)]
    pbar.update_absolute(pbar.total)
    return AutoTuneResult(best=best, latent=latent, image=image, final_terms=final_terms, records=records,
                          best_index=history.index(best), images=images, nfe=renderer.nfe,
                          dit_calls=renderer.dit_calls, unused_candidates=unused_candidates, search=search)


def _evaluation_reporter(images: list, pbar, node_id, to_preview):
    """on_evaluation of the search: keeps the image, previews it on the progress bar and sends a line of text."""
    def on_evaluation(e):
        image = e.payload[1][0]
        images.append(image)
        pbar.update_absolute(pbar.current, preview=("JPEG", to_preview(image), 512) if to_preview else None)
        _send_text(node_id, f"candidate {len(images)}: α = {e.alpha:.4f}, β = ({e.beta_1:g}, {e.beta_2:g}), "
                            f"seed {e.seed} → S = {e.score:.3f}")
    return on_evaluation


def _searched_beta(e, options: SearchOptions):
    if e.stage != "beta":
        return None
    return e.beta_2 if e.beta_1 == options.beta_stronger else e.beta_1


def _send_text(node_id, text: str) -> None:
    try:
        from server import PromptServer
        if node_id is not None and PromptServer.instance is not None:
            PromptServer.instance.send_progress_text(text, node_id)
    except (ImportError, AttributeError):
        pass  # in-process use without a server


def search_problems(steps, t_den_step, search_steps, alpha_min, alpha_max, beta_min, beta_max) -> list[str]:
    """What is wrong with Auto-Tune's grid and search bounds (None: not known yet, a linked input)."""
    found = grid_problems(steps, t_den_step)  # the ranges: @guard_inputs
    if search_steps == 1:
        found.append("search_steps: use 0 (search at the full steps) or at least 2")
    if None not in (alpha_min, alpha_max) and alpha_min >= alpha_max:
        found.append(f"alpha_min: {alpha_min} must be below alpha_max ({alpha_max})")
    if None not in (beta_min, beta_max) and beta_min >= beta_max:
        found.append(f"beta_min: {beta_min} must be below beta_max ({beta_max})")
    return found
