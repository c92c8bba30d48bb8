"""VMDiff Auto-Tune (EAA): searches α, then the weaker side's β (and ε, in paper mode) for the best Similarity Score,
by calling the same stage functions as the Blending Noise / Mixing Denoise nodes."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

import torch

import comfy.model_management
import comfy.utils
from comfy_api.latest import io, ui

from ..vmdiff_ops import (INVERSION_RULES, MIX_RULES, PRESETS, SearchOptions, beta_grid,
                          efficient_adaptive_adjustment)
from ..vmdiff_ops.search import INV_PHI
from .blending_noise import run_blending_noise
from .common import (CONTEXT_MODES, ReduxTokensType, ScorerType, VMDiffInputError, grid_problems,
                     upstream_model_files, widget_problems)
from .mixing_denoise import run_mixing_denoise
from .plots import candidate_grid, search_plot, to_pil


@dataclass(frozen=True)
class StageSettings:
    """The stage options shared by every candidate (the manual nodes' widgets)."""

    width: int = 512
    height: int = 512
    steps: int = 20
    t_den_step: int = 10
    guidance_denoise: float = 5.0
    guidance_invert: float = 0.0
    guidance: float = 4.0
    mix_rule: str = "official"
    inversion: str = "lagged"
    context: str = "redux_only"
    bf16_state: bool = False

    def at_steps(self, steps: int) -> "StageSettings":
        """The same settings on a coarser grid (search_steps): t_den keeps its place along the schedule."""
        if steps == self.steps:
            return self
        t_den = min(max(0, round(self.t_den_step * steps / self.steps)), steps - 2)
        return replace(self, steps=steps, t_den_step=t_den)


class CandidateRenderer:
    """Renders candidates (α, β1, β2, seed) to decoded images, several in one DiT batch if asked; ε_b is computed
    once per (β1, β2, seed, grid) and reused. ``nfe`` counts latents through the DiT (sample-NFE), ``dit_calls``
    the batched forward passes (the sequential cost)."""

    def __init__(self, model, tokens_1, tokens_2, conditioning, vae, callback=None):
        self.model, self.tokens, self.conditioning, self.vae = model, (tokens_1, tokens_2), conditioning, vae
        self.callback = callback
        self.eps_cache: dict[tuple, torch.Tensor] = {}
        self.nfe = self.dit_calls = self.rendered = 0

    def _count(self, out: dict, batch: int) -> None:
        self.nfe += out["nfe"]
        self.dit_calls += out["nfe"] // batch

    def eps_b(self, betas: list[tuple[float, float]], seed: int, s: StageSettings) -> list[torch.Tensor]:
        """ε_b for each (β1, β2) at one seed; the missing ones in one batched Blending Noise run."""
        keys = [(b1, b2, seed, s.steps, s.t_den_step) for b1, b2 in betas]
        missing = list(dict.fromkeys(k for k in keys if k not in self.eps_cache))
        if missing:
            out = run_blending_noise(self.model, *self.tokens, self.conditioning, seed, s.width, s.height, s.steps,
                                     s.t_den_step, s.guidance_denoise, s.guidance_invert, [k[0] for k in missing],
                                     [k[1] for k in missing], s.inversion, s.context, callback=self.callback,
                                     bf16_state=s.bf16_state)
            self._count(out, len(missing))
            self.eps_cache.update((k, out["x"][i:i + 1]) for i, k in enumerate(missing))
        return [self.eps_cache[k] for k in keys]

    def render_many(self, candidates: list[tuple[float, float, float, int]], s: StageSettings) -> list[tuple]:
        """[(latent, image)] for each candidate, all Mixing Denoise runs in one batch (one seed per call)."""
        results: dict[int, tuple] = {}
        for seed in dict.fromkeys(c[3] for c in candidates):
            group = [i for i, c in enumerate(candidates) if c[3] == seed]
            eps_b = torch.cat(self.eps_b([candidates[i][1:3] for i in group], seed, s))
            out = run_mixing_denoise(self.model, eps_b, *self.tokens, self.conditioning,
                                     [candidates[i][0] for i in group], s.guidance, s.steps, s.mix_rule, s.context,
                                     seed, callback=self.callback, bf16_state=s.bf16_state)
            self._count(out, len(group))
            images = self.vae.decode(out["latent"])
            results.update((i, (out["latent"][k:k + 1], images[k:k + 1])) for k, i in enumerate(group))
        self.rendered += len(candidates)
        return [results[i] for i in range(len(candidates))]

    def render(self, alpha: float, beta_1: float, beta_2: float, seed: int, s: StageSettings):
        return self.render_many([(alpha, beta_1, beta_2, seed)], s)[0]


def expected_evaluations(o: SearchOptions) -> tuple[int, int]:
    """Upper bounds of α-stage and β-stage candidates per round (sizes the progress bar)."""
    brackets = min(o.alpha_max_iter, math.ceil(math.log(o.alpha_tol / (o.alpha_max - o.alpha_min)) / math.log(INV_PHI)))
    return brackets + 1, len(beta_grid(o.beta_min, o.beta_max, o.beta_step))


def auto_tune(model, tokens_1, tokens_2, conditioning, vae, scorer, seed: int, options: SearchOptions,
              settings: StageSettings, search_steps: int = 0, node_id=None, candidates_per_batch: int = 1) -> dict:
    """EAA over rendered, scored candidates; the winner is re-rendered at full steps if the search used fewer.
    ``candidates_per_batch`` > 1 renders the candidates the search needs next, and those it may need after them,
    in one DiT batch (same result; fewer sequential passes, more latents through the DiT)."""
    search = settings.at_steps(search_steps) if search_steps else settings
    n_alpha, n_beta = expected_evaluations(options)
    bnoise = 2 * (search.t_den_step + 1)
    most_steps = options.rounds * (bnoise + n_alpha * search.steps + n_beta * (bnoise + search.steps))
    if search is not settings:
        most_steps += 2 * (settings.t_den_step + 1) + settings.steps
    pbar = comfy.utils.ProgressBar(most_steps, node_id=node_id)  # an upper bound; filled at the end
    renderer = CandidateRenderer(model, tokens_1, tokens_2, conditioning, vae,
                                 callback=lambda *_: pbar.update(1))
    images: list[torch.Tensor] = []

    def evaluate_batch(candidates):
        comfy.model_management.throw_exception_if_processing_interrupted()
        rendered = renderer.render_many(list(candidates), search)
        scores = scorer.score(torch.cat([image for _, image in rendered]))
        return [(terms["score"], terms, payload) for terms, payload in zip(scores, rendered)]

    def on_evaluation(e):  # a candidate the search consumed (not a speculative one it did not need)
        image = e.payload[1][0]
        images.append(image)
        pbar.update_absolute(pbar.current, preview=("JPEG", to_pil(image), 512))
        _send_text(node_id, f"candidate {len(images)}: α = {e.alpha:.4f}, β = ({e.beta_1:g}, {e.beta_2:g}), "
                            f"seed {e.seed} → S = {e.score:.3f}")

    best, history = efficient_adaptive_adjustment(lambda *c: evaluate_batch([c])[0], seed, options,
                                                  on_evaluation=on_evaluation, evaluate_batch=evaluate_batch,
                                                  batch_size=candidates_per_batch)
    unused_candidates = renderer.rendered - len(history)  # rendered ahead, never asked for by the search
    latent, image = best.payload
    final_terms = best.terms
    if search.steps != settings.steps:  # the search ran on a coarser grid: render the winner for real
        latent, image = renderer.render(best.alpha, best.beta_1, best.beta_2, best.seed, settings)
        final_terms = scorer.score(image)[0]
    records = [dict(e.record(), index=i, searched_beta=_searched_beta(e, options)) for i, e in enumerate(history)]
    best_index = history.index(best)
    pbar.update_absolute(pbar.total)
    return {"best": best, "latent": latent, "image": image, "final_terms": final_terms, "records": records,
            "best_index": best_index, "images": images, "nfe": renderer.nfe, "dit_calls": renderer.dit_calls,
            "unused_candidates": unused_candidates, "search": search}


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


OPTION_INPUTS = [  # (SearchOptions field, widget factory)
    ("alpha_min", lambda d: io.Float.Input("alpha_min", default=d, min=0.0, max=1.0, step=0.001,
                                           tooltip="Lower end of the α search (official 0.4).")),
    ("alpha_max", lambda d: io.Float.Input("alpha_max", default=d, min=0.0, max=1.0, step=0.001,
                                           tooltip="Upper end of the α search (official 0.6).")),
    ("alpha_tol", lambda d: io.Float.Input("alpha_tol", default=d, min=0.0001, max=0.5, step=0.0001,
                                           tooltip="Golden-section stops when the α bracket is this narrow.")),
    ("beta_min", lambda d: io.Float.Input("beta_min", default=d, min=0.01, max=10.0, step=0.01,
                                          tooltip="Smallest β tried for the weaker side.")),
    ("beta_max", lambda d: io.Float.Input("beta_max", default=d, min=0.01, max=10.0, step=0.01,
                                          tooltip="β search bound (the grid stops one step below).")),
    ("beta_step", lambda d: io.Float.Input("beta_step", default=d, min=0.01, max=5.0, step=0.01,
                                           tooltip="Spacing of the β grid.")),
    ("beta_tol", lambda d: io.Float.Input("beta_tol", default=d, min=0.01, max=10.0, step=0.01,
                                          tooltip="β search stops when its bracket is this narrow.")),
    ("beta_stronger", lambda d: io.Float.Input("beta_stronger", default=d, min=0.01, max=10.0, step=0.01,
                                               tooltip="β of the stronger side during the β stage: 0.5 official "
                                                       "(reference code), 1.0 paper.")),
    ("threshold", lambda d: io.Float.Input("threshold", default=d, min=-10.0, max=10.0, step=0.01,
                                           tooltip="Stop once the score exceeds this (2.4).")),
    ("rounds", lambda d: io.Int.Input("rounds", default=d, min=1, max=10,
                                      tooltip="K: rounds with ε resampled (seed + r) when the score stays below "
                                              "the threshold; 1 official, 3 paper.")),
]


class VMDiffAutoTune(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        defaults = PRESETS["official"]
        return io.Schema(
            node_id="VMDiffAutoTune",
            display_name="VMDiff Auto-Tune",
            category="VMDiff",
            description="Efficient Adaptive Adjustment: golden-section search of α (β1 = β2 = 1), then of the weaker "
                        "side's β if the score stays under the threshold (and new ε in further rounds). Every "
                        "candidate is Blending Noise → Mixing Denoise → VAE decode → Similarity Score.",
            inputs=[
                io.Model.Input("model"),
                ReduxTokensType.Input("tokens_1"),
                ReduxTokensType.Input("tokens_2"),
                io.Conditioning.Input("conditioning"),
                io.Vae.Input("vae"),
                ScorerType.Input("scorer", tooltip="From VMDiff Scorer (sources, labels and scorer models)."),
                io.Int.Input("seed", default=42, min=0, max=0xffffffffffffffff, control_after_generate=True),
                io.Combo.Input("preset", options=["official", "paper", "custom"], default="official",
                               tooltip="Choosing official or paper sets the search widgets below (and mix_rule) to "
                                       "that preset. The widgets are always what runs; the log says where they "
                                       "depart from the named preset."),
                io.Int.Input("width", default=512, min=16, max=4096, step=16),
                io.Int.Input("height", default=512, min=16, max=4096, step=16),
                io.Int.Input("steps", default=20, min=2, max=200, tooltip="Steps of the final image."),
                io.Int.Input("search_steps", default=0, min=0, max=200,
                             tooltip="Steps while searching (0 = same as steps). Fewer steps make the search "
                                     "cheaper; the winner is re-rendered at full steps."),
                io.Int.Input("t_den_step", default=10, min=0, max=198),
                io.Float.Input("guidance_denoise", default=5.0, min=0.0, max=100.0, step=0.1),
                io.Float.Input("guidance_invert", default=0.0, min=0.0, max=100.0, step=0.1),
                io.Float.Input("guidance", default=4.0, min=0.0, max=100.0, step=0.1),
                io.Combo.Input("mix_rule", options=list(MIX_RULES), default="official"),
                io.Combo.Input("inversion", options=list(INVERSION_RULES), default="lagged"),
                io.Combo.Input("context", options=list(CONTEXT_MODES), default="redux_only"),
                io.Boolean.Input("bf16_state", default=False, tooltip="Parity: bf16 latents between steps."),
                *[make(getattr(defaults, name)) for name, make in OPTION_INPUTS],
                io.Int.Input("candidates_per_batch", default=1, min=1, max=16,
                             tooltip="Render this many candidates in one DiT batch: the one the search needs now "
                                     "and those it may need after it (3 or 7 use a batch best). Same result as 1; "
                                     "fewer sequential model passes, more latents per pass, more VRAM."),
            ],
            outputs=[
                io.Image.Output(display_name="image"),
                io.Latent.Output(display_name="latent"),
                io.Float.Output(display_name="alpha"),
                io.Float.Output(display_name="beta_1"),
                io.Float.Output(display_name="beta_2"),
                io.Int.Output(display_name="seed"),
                io.Float.Output(display_name="score"),
                io.String.Output(display_name="params", tooltip="JSON for VMDiff Save Image and replay."),
                io.String.Output(display_name="log", tooltip="JSON: every candidate with all score terms."),
                io.Image.Output(display_name="plot"),
                io.Image.Output(display_name="grid"),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def validate_inputs(cls, steps, t_den_step, search_steps, alpha_min, alpha_max, beta_min, beta_max):
        return "; ".join(search_problems(steps, t_den_step, search_steps, alpha_min, alpha_max, beta_min,
                                         beta_max)) or True

    @classmethod
    def execute(cls, model, tokens_1, tokens_2, conditioning, vae, scorer, seed, preset="official", width=512,
                height=512, steps=20, search_steps=0, t_den_step=10, guidance_denoise=5.0, guidance_invert=0.0,
                guidance=4.0, mix_rule="official", inversion="lagged", context="redux_only", bf16_state=False,
                candidates_per_batch=1, **search_widgets) -> io.NodeOutput:
        if not callable(getattr(scorer, "score", None)):
            raise VMDiffInputError("scorer: expected the output of VMDiff Scorer")
        problems = search_problems(steps, t_den_step, search_steps, *(search_widgets.get(k) for k in (
            "alpha_min", "alpha_max", "beta_min", "beta_max")))  # again: linked inputs are None at validation
        if problems:
            raise VMDiffInputError("; ".join(problems))
        options = SearchOptions(**{**asdict(PRESETS["official"]), **search_widgets})
        settings = StageSettings(width, height, steps, t_den_step, guidance_denoise, guidance_invert, guidance,
                                 mix_rule, inversion, context, bf16_state)
        node_id = cls.hidden.unique_id if cls.hidden else None
        prompt = cls.hidden.prompt if cls.hidden else None
        result = auto_tune(model, tokens_1, tokens_2, conditioning, vae, scorer, seed, options, settings,
                           search_steps, node_id, candidates_per_batch)
        best = result["best"]
        departures = _preset_departures(preset, options, mix_rule)
        params = {"alpha": best.alpha, "beta_1": best.beta_1, "beta_2": best.beta_2, "seed": best.seed,
                  "score": result["final_terms"]["score"], "search_score": best.score, "preset": preset,
                  "preset_departures": departures, "stage_settings": asdict(settings), "search_steps": search_steps,
                  "search_options": asdict(options), "models": upstream_model_files(prompt, node_id),
                  "candidates": len(result["records"]), "sample_nfe": result["nfe"], "dit_calls": result["dit_calls"],
                  "candidates_per_batch": candidates_per_batch,
                  "unused_candidates": result["unused_candidates"]}
        log = {"params": params, "candidates": result["records"], "final_terms": result["final_terms"]}
        captions = [f"{r['index'] + 1}: a={r['alpha']:.3f} b=({r['beta_1']:g},{r['beta_2']:g}) S={r['score']:.2f}"
                    for r in result["records"]]
        best_record = result["records"][result["best_index"]]
        plot = search_plot(result["records"], best_record, options.threshold)
        grid = candidate_grid(result["images"], captions, result["best_index"])
        summary = (f"best S = {params['score']:.3f} at α = {best.alpha:.4f}, β = ({best.beta_1:g}, {best.beta_2:g}), "
                   f"seed {best.seed} — {len(result['records'])} candidates, {result['nfe']} sample-NFE in "
                   f"{result['dit_calls']} DiT passes"
                   + (f"; preset {preset} with {', '.join(departures)} changed" if departures else ""))
        return io.NodeOutput(result["image"], {"samples": result["latent"]}, best.alpha, best.beta_1, best.beta_2,
                             best.seed, params["score"], json.dumps(params), json.dumps(log), plot, grid,
                             ui=ui.PreviewText(summary))


def search_problems(steps, t_den_step, search_steps, alpha_min, alpha_max, beta_min, beta_max) -> list[str]:
    """What is wrong with Auto-Tune's grid and search bounds (None: not known yet, a linked input)."""
    problems = grid_problems(steps, t_den_step) + widget_problems(
        {"search_steps": (0, 200), "alpha_min": (0.0, 1.0), "alpha_max": (0.0, 1.0), "beta_min": (0.01, 10.0),
         "beta_max": (0.01, 10.0)}, search_steps=search_steps, alpha_min=alpha_min, alpha_max=alpha_max,
        beta_min=beta_min, beta_max=beta_max)
    if search_steps == 1:
        problems.append("search_steps: use 0 (search at the full steps) or at least 2")
    if None not in (alpha_min, alpha_max) and alpha_min >= alpha_max:
        problems.append(f"alpha_min: {alpha_min} must be below alpha_max ({alpha_max})")
    if None not in (beta_min, beta_max) and beta_min >= beta_max:
        problems.append(f"beta_min: {beta_min} must be below beta_max ({beta_max})")
    return problems


PRESET_MIX_RULES = {"official": "official", "paper": "slerp"}


def preset_widget_values() -> dict[str, dict]:
    """{preset: {widget: value}}: what choosing a preset sets on the Auto-Tune node (web/vmdiff_auto_tune.js fetches
    it from GET /vmdiff/presets) and what the log's preset_departures compares against."""
    widgets = {name for name, _ in OPTION_INPUTS}
    return {name: {**{k: v for k, v in asdict(options).items() if k in widgets}, "mix_rule": PRESET_MIX_RULES[name]}
            for name, options in PRESETS.items()}


def register_routes() -> None:
    """GET /vmdiff/presets on the running ComfyUI server (nothing to do without one, e.g. in-process tests)."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is None or getattr(register_routes, "done", False):
        return

    @PromptServer.instance.routes.get("/vmdiff/presets")
    async def presets(request):
        return web.json_response(preset_widget_values())

    register_routes.done = True


def _preset_departures(preset: str, options: SearchOptions, mix_rule: str) -> list[str]:
    if preset not in PRESETS:
        return []
    named = asdict(PRESETS[preset])
    changed = [k for k, v in asdict(options).items() if named[k] != v]
    if mix_rule != PRESET_MIX_RULES[preset]:
        changed.append("mix_rule")
    return changed
