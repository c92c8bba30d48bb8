"""VMDiff Auto-Tune (EAA): searches α, then the weaker side's β (and ε, in paper mode) for the best Similarity Score,
by calling the same stage functions as the Blending Noise / Mixing Denoise nodes."""
from __future__ import annotations

import json
from dataclasses import asdict

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import VMDiffInputError, guard_inputs
from ..vmdiff_comfy.stages import settings
from ..vmdiff_comfy.stages.auto_tune import auto_tune, search_problems
from ..vmdiff_comfy.stages.plots import candidate_grid, search_plot, to_pil
from ..vmdiff_comfy.stages.presets import PRESET_CHOICES, preset_departures
from ..vmdiff_comfy.stages.provenance import upstream_model_files
from ..vmdiff_comfy.stages.settings import SEARCH_OPTION_NAMES
from ..vmdiff_comfy.stages.sockets import ReduxTokensType, ScorerType
from ..vmdiff_comfy.discovery import with_discovery
from ..vmdiff_ops import PRESETS, SearchOptions

STAGE_WIDGETS = ("width", "height", "steps", "search_steps", "t_den_step", "guidance_denoise", "guidance_invert",
                 "guidance", "mix_rule", "inversion", "context", "bf16_state")
WIDGETS = ("seed", *STAGE_WIDGETS, *SEARCH_OPTION_NAMES, "candidates_per_batch")


@with_discovery
@guard_inputs
class VMDiffAutoTune(io.ComfyNode):
    @classmethod
    def define_schema(cls):
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
                settings.SETTINGS["seed"].input(),
                io.Combo.Input("preset", options=list(PRESET_CHOICES), default="official",
                               tooltip="Choosing official or paper sets the search widgets below (and mix_rule) to "
                                       "that preset. The widgets are always what runs; the log says where they "
                                       "depart from the named preset."),
                *settings.inputs(*STAGE_WIDGETS, steps="Auto-Tune: the steps of the final image."),
                *settings.inputs(*SEARCH_OPTION_NAMES, "candidates_per_batch"),
                settings.stage_settings_input(),
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
    def validate_inputs(cls, **values):  # after @guard_inputs's range checks: the grid and the search bounds
        return "; ".join(cls.problems(values)) or True

    @staticmethod
    def problems(values: dict) -> list[str]:
        return search_problems(*(values.get(k) for k in (
            "steps", "t_den_step", "search_steps", "alpha_min", "alpha_max", "beta_min", "beta_max")))

    @classmethod
    def execute(cls, model, tokens_1, tokens_2, conditioning, vae, scorer, seed=None, preset="official",
                stage_settings=None, **widgets) -> io.NodeOutput:
        if not callable(getattr(scorer, "score", None)):
            raise VMDiffInputError("scorer: expected the output of VMDiff Scorer")
        v = settings.with_defaults(WIDGETS, dict(widgets, seed=seed))
        settings.raise_problems(cls.problems(v))  # again: linked inputs are None at validation
        options = SearchOptions(**{**asdict(PRESETS["official"]), **{k: v[k] for k in SEARCH_OPTION_NAMES}})
        stage, note = settings.resolve(stage_settings, v)
        node_id = cls.hidden.unique_id if cls.hidden else None
        prompt = cls.hidden.prompt if cls.hidden else None
        result = auto_tune(model, tokens_1, tokens_2, conditioning, vae, scorer, seed=v["seed"], options=options,
                           settings=stage, width=v["width"], height=v["height"], search_steps=v["search_steps"],
                           node_id=node_id, candidates_per_batch=v["candidates_per_batch"], to_preview=to_pil)
        best = result.best
        departures = preset_departures(preset, options, stage.mix_rule)
        params = {"alpha": best.alpha, "beta_1": best.beta_1, "beta_2": best.beta_2, "seed": best.seed,
                  "score": result.final_terms["score"], "search_score": best.score, "preset": preset,
                  "preset_departures": departures,
                  "stage_settings": dict(width=v["width"], height=v["height"], **asdict(stage)),
                  "search_steps": v["search_steps"], "search_options": asdict(options),
                  "models": upstream_model_files(prompt, node_id), "candidates": len(result.records),
                  "sample_nfe": result.nfe, "dit_calls": result.dit_calls,
                  "candidates_per_batch": v["candidates_per_batch"], "unused_candidates": result.unused_candidates}
        log = {"params": params, "candidates": result.records, "final_terms": result.final_terms}
        captions = [f"{r['index'] + 1}: a={r['alpha']:.3f} b=({r['beta_1']:g},{r['beta_2']:g}) S={r['score']:.2f}"
                    for r in result.records]
        best_record = result.records[result.best_index]
        plot = search_plot(result.records, best_record, options.threshold)
        grid = candidate_grid(result.images, captions, result.best_index)
        summary = (f"best S = {params['score']:.3f} at α = {best.alpha:.4f}, β = ({best.beta_1:g}, {best.beta_2:g}), "
                   f"seed {best.seed} — {len(result.records)} candidates, {result.nfe} sample-NFE in "
                   f"{result.dit_calls} DiT passes"
                   + (f"; preset {preset} with {', '.join(departures)} changed" if departures else "")
                   + (f"; {note}" if note else ""))
        return io.NodeOutput(result.image, {"samples": result.latent}, best.alpha, best.beta_1, best.beta_2,
                             best.seed, params["score"], json.dumps(params), json.dumps(log), plot, grid,
                             ui=ui.PreviewText(summary))
