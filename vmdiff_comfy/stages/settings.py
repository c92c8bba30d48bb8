"""One declaration per stage setting: its default, range, tooltip and the spec's symbol. Every node's widgets, its
``validate_inputs``, the defaults of its ``execute`` and tools/build_workflows.py's widget values come from here.

Parity and option knobs (``optional=True``) are optional inputs whose defaults are the reference code's, so an API
prompt written before a knob existed still runs (issue 13 item 3)."""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import comfy.samplers
from comfy_api.latest import io

from ...vmdiff_ops import INVERSION_RULES, MIX_RULES, PRESETS
from ...vmdiff_ops.regional import IMAGE_ATTENTION
from ..errors import VMDiffInputError
from .checks import number_problem
from .flow import CONTEXT_MODES

SEED_MAX = 0xffffffffffffffff


@dataclass(frozen=True)
class Setting:
    """A stage setting as a widget: ``kind`` is "int", "float", "bool", "string" or "combo"."""

    name: str
    kind: str
    default: Any
    tooltip: str
    symbol: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: tuple = ()
    optional: bool = False
    seeded: bool = False  # control_after_generate (adds a widget value after the seed in UI workflows)

    def input(self, tooltip: str | None = None) -> io.Input:
        """The node input of this setting (``tooltip``: a node-specific sentence appended to the declared one)."""
        text = self.tooltip + (f" {tooltip}" if tooltip else "")
        common = dict(default=self.default, optional=self.optional, tooltip=text)
        if self.kind == "combo":
            return io.Combo.Input(self.name, options=list(self.options), **common)
        if self.kind == "bool":
            return io.Boolean.Input(self.name, **common)
        if self.kind == "string":
            return io.String.Input(self.name, **common)
        numeric = dict(common, min=self.min, max=self.max, **({"step": self.step} if self.step else {}))
        if self.kind == "int":
            return io.Int.Input(self.name, control_after_generate=self.seeded or None, **numeric)
        return io.Float.Input(self.name, **numeric)

    def problems(self, value) -> list[str]:
        """What is wrong with ``value`` (None: a linked input, not known at validation time)."""
        if value is None:
            return []
        if self.kind == "string":
            return []
        if self.kind == "combo":
            return [] if value in self.options else [
                f"{self.name}: unknown value {value!r}; expected one of {', '.join(self.options)}"]
        if self.kind == "bool":
            return []
        found = number_problem(self.name, value, self.min, self.max)
        return [found] if found else []


def _declare(*settings: Setting) -> dict[str, Setting]:
    return {s.name: s for s in settings}


_SEARCH = PRESETS["official"]  # the search options' defaults are the official preset's (vmdiff_ops.search)

SETTINGS = _declare(
    Setting("seed", "int", 42, "Seed of the starting noise ε.", "ε", 0, SEED_MAX, seeded=True),
    Setting("width", "int", 512, "Output width, a multiple of 16 (reference 512).", "W", 16, 4096, 16),
    Setting("height", "int", 512, "Output height, a multiple of 16 (reference 512).", "H", 16, 4096, 16),
    Setting("steps", "int", 20, "Steps of the σ grid from σ = 1 to 0 (μ from the image size; reference 20).", "T",
            2, 200),  # the flow grid needs two steps (σ = 1 and one more before 0)
    Setting("t_den_step", "int", 10, "t_den as a step index: Blending Noise denoises σ_0…σ_t_den, then inverts. "
            "10 of 20 is t ≈ 652 at 512²; must be ≤ steps − 2.", "t_den", 0, 198),
    Setting("guidance_denoise", "float", 5.0, "γ_den, Flux guidance while denoising to t_den.", "γ_den", 0.0, 100.0,
            0.1),
    Setting("guidance_invert", "float", 0.0, "γ_inv, Flux guidance while inverting to σ = 1.", "γ_inv", 0.0, 100.0,
            0.1),
    Setting("guidance", "float", 4.0, "γ_gen, Flux guidance of Mixing Denoise.", "γ_gen", 0.0, 100.0, 0.1),
    Setting("beta_1", "float", 1.0, "β1, the weight of z1 in SCat.", "β1", 0.01, 10.0, 0.01),
    Setting("beta_2", "float", 1.0, "β2, the weight of z2 in SCat.", "β2", 0.01, 10.0, 0.01),
    Setting("alpha", "float", 0.5, "α, the weight of image 2 in the token mix SInp (0 = image 1 only).", "α", 0.0, 1.0,
            0.001),
    # part-level fusion (Mixing Denoise with a mask; vmdiff_ops.regional)
    Setting("alpha_masked", "float", 0.5, "α where the mask is 1 (part-level fusion; unused without a mask).",
            "α_masked", 0.0, 1.0, 0.001, optional=True),
    Setting("mask_levels", "int", 2, "K: a soft mask is quantised to K α levels between alpha and alpha_masked; "
            "each level in use adds one block of visual context tokens (cost).", "K_α", 2, 8, optional=True),
    Setting("image_attention", "combo", "whole_image", "whole_image: image tokens attend to the whole image "
            "(regions blend at the border); own_region: only to their own region (exact isolation, a hard seam). "
            "Either way an image token sees only its own α's context block.", options=IMAGE_ATTENTION,
            optional=True),
    Setting("mix_rule", "combo", "official", "official: the reference's per-token rule on raw tokens (≈ lerp); "
            "slerp: the paper's spherical mix of directions with norms interpolated; lerp.", "mix",
            options=tuple(MIX_RULES), optional=True),
    Setting("inversion", "combo", "lagged", "lagged: the reference's inversion rule (source latent, destination "
            "timestep); exact-euler: velocity at the source σ.", options=tuple(INVERSION_RULES), optional=True),
    Setting("context", "combo", "redux_only", "redux_only: the reference (Redux tokens only); text_and_redux: the "
            "prompt's text tokens first, then the Redux tokens; text_and_references (FLUX.2, Kontext): the prompt's "
            "text tokens, the images as reference latents.", options=CONTEXT_MODES, optional=True),
    Setting("bf16_state", "bool", False, "Parity with the reference code: round ε and the latent to bf16 after "
            "every step, and feed the DiT bf16-rounded t and guidance (off: float32, ComfyUI's default).",
            optional=True),
    # Auto-Tune's search
    Setting("search_steps", "int", 0, "Steps while searching (0 = same as steps). Fewer steps make the search "
            "cheaper; the winner is re-rendered at full steps.", "", 0, 200),
    Setting("alpha_min", "float", _SEARCH.alpha_min, "Lower end of the α search (official 0.4).", "α_min", 0.0, 1.0,
            0.001, optional=True),
    Setting("alpha_max", "float", _SEARCH.alpha_max, "Upper end of the α search (official 0.6).", "α_max", 0.0, 1.0,
            0.001, optional=True),
    Setting("alpha_tol", "float", _SEARCH.alpha_tol, "Golden-section stops when the α bracket is this narrow.",
            "", 0.0001, 0.5, 0.0001, optional=True),
    Setting("beta_min", "float", _SEARCH.beta_min, "Smallest β tried for the weaker side.", "β_min", 0.01, 10.0,
            0.01, optional=True),
    Setting("beta_max", "float", _SEARCH.beta_max, "β search bound (the grid stops one step below).", "β_max", 0.01,
            10.0, 0.01, optional=True),
    Setting("beta_step", "float", _SEARCH.beta_step, "Spacing of the β grid.", "", 0.01, 5.0, 0.01, optional=True),
    Setting("beta_tol", "float", _SEARCH.beta_tol, "β search stops when its bracket is this narrow.", "", 0.01, 10.0,
            0.01, optional=True),
    Setting("beta_stronger", "float", _SEARCH.beta_stronger, "β of the stronger side during the β stage: 0.5 "
            "official (reference code), 1.0 paper.", "", 0.01, 10.0, 0.01, optional=True),
    Setting("threshold", "float", _SEARCH.threshold, "Stop once the score exceeds this (2.4).", "τ", -10.0, 10.0,
            0.01, optional=True),
    Setting("rounds", "int", _SEARCH.rounds, "K: rounds with ε resampled (seed + r) when the score stays below the "
            "threshold; 1 official, 3 paper.", "K", 1, 10, optional=True),
    Setting("candidates_per_batch", "int", 1, "Render this many candidates in one DiT batch: the one the search "
            "needs now and those it may need after it (3 or 7 use a batch best). Same result as 1; fewer sequential "
            "model passes, more latents per pass, more VRAM.", "", 1, 16, optional=True),
)

#: VMDiff MagicMix's own settings: any model ComfyUI samples, on that model's own σ grid (not the VMDiff stages').
MAGICMIX = _declare(
    Setting("seed", "int", 0, "Seed of the one noise draw ε (the same draw KSampler makes).", "ε", 0, SEED_MAX,
            seeded=True),
    Setting("steps", "int", 20, "T, steps of the whole σ grid.", "T", 1, 1000),
    Setting("scheduler", "combo", "simple", "The σ grid from the model's own model_sampling (ComfyUI "
            "calculate_sigmas).", options=tuple(comfy.samplers.SCHEDULER_NAMES)),
    Setting("k_max", "float", 0.6, "K_max as a fraction of T: where generation starts from the noised layout.",
            "K_max", 0.0, 1.0, 0.01),
    Setting("k_min", "float", 0.3, "K_min as a fraction of T: the layout phase ends here (k_min = k_max: plain "
            "img2img from K_max).", "K_min", 0.0, 1.0, 0.01),
    Setting("nu", "float", 0.5, "ν, the mixing constant: 1 follows the content only, 0 keeps the layout noise path "
            "down to K_min.", "ν", 0.0, 1.0, 0.01),
    Setting("cfg", "float", 1.0, "Classifier-free guidance for ε-prediction models (e.g. 7.5 on SD1.5, needs "
            "negative); keep 1 on Flux (guidance-distilled: use FluxGuidance).", "", 0.0, 100.0, 0.1),
    Setting("width", "int", 512, "Output width for text–text mixing (an image layout sets its own size).", "", 8,
            16384, 8),
    Setting("height", "int", 512, "Output height for text–text mixing.", "", 8, 16384, 8),
    Setting("reweight_scale", "float", 1.0, "s, the attention re-weighting factor of reweight_tokens (1 = off); see reweight_tokens.",
            "s", -2.0, 2.0, 0.05),
    Setting("reweight_tokens", "string", "", "Token positions of the content prompt whose cross-attention is "
            "scaled by reweight_scale, comma-separated (0 is CLIP's start token, 1 the first word; common words "
            "are one token). SD1.x/SD2/SDXL UNets: the value vectors of those tokens are multiplied by s in every "
            "cross-attention layer (attn2 patch, conditional pass only); since to_v has no bias this is exactly "
            "the paper's scaling of the token's attention column by s (s < 0 removes the concept). Not supported "
            "on joint-attention models such as Flux (text and image tokens attend jointly through biased "
            "projections, so there is no per-token attention column to scale): the node refuses a token list "
            "there."),
)

#: The search widgets of Auto-Tune (SearchOptions fields), in widget order.
SEARCH_OPTION_NAMES = ("alpha_min", "alpha_max", "alpha_tol", "beta_min", "beta_max", "beta_step", "beta_tol",
                       "beta_stronger", "threshold", "rounds")


def inputs(*names: str, table: dict[str, Setting] = SETTINGS, **tooltips: str) -> list[io.Input]:
    """The widgets of ``names`` in that order (``tooltips``: a node-specific sentence per name)."""
    return [table[n].input(tooltips.get(n)) for n in names]


def with_defaults(names, values: dict, table: dict[str, Setting] = SETTINGS) -> dict[str, Any]:
    """``values`` with every setting of ``names`` that is missing or None (an optional input left out) at its
    declared default."""
    return {**values, **{n: table[n].default for n in names if values.get(n) is None}}


def problems(table: dict[str, Setting] = SETTINGS, **values) -> list[str]:
    """Range / option problems of every declared setting among ``values`` (the others are ignored)."""
    return [p for name, value in values.items() if name in table for p in table[name].problems(value)]


def grid_problems(steps, t_den_step) -> list[str]:
    """t_den is a step index of the grid, at most steps − 2 (Blending Noise and Auto-Tune)."""
    if steps is None or t_den_step is None or problems(steps=steps, t_den_step=t_den_step):
        return []
    if steps < 2:
        return [f"steps: Blending Noise needs at least 2 steps, got {steps}"]
    if t_den_step > steps - 2:
        return [f"t_den_step: {t_den_step} is outside the {steps}-step grid; use 0…{steps - 2}"]
    return []


def raise_problems(found: list[str]) -> None:
    if found:
        raise VMDiffInputError("; ".join(found))


@contextlib.contextmanager
def ops_errors(prefix: str = ""):
    """The one translation of a ``vmdiff_ops`` ValueError (which names the paper's symbol) to a node input error."""
    try:
        yield
    except VMDiffInputError:
        raise
    except ValueError as error:
        raise VMDiffInputError(f"{prefix}{error}") from None


@dataclass(frozen=True)
class StageSettings:
    """The settings every VMDiff stage of one fusion shares (the VMDiff Stage Settings node's output)."""

    steps: int = SETTINGS["steps"].default
    t_den_step: int = SETTINGS["t_den_step"].default
    guidance_denoise: float = SETTINGS["guidance_denoise"].default
    guidance_invert: float = SETTINGS["guidance_invert"].default
    guidance: float = SETTINGS["guidance"].default
    mix_rule: str = SETTINGS["mix_rule"].default
    inversion: str = SETTINGS["inversion"].default
    context: str = SETTINGS["context"].default
    bf16_state: bool = SETTINGS["bf16_state"].default

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_inputs(cls, values: dict) -> "StageSettings":
        """From a node's inputs (missing or None optional ones at their defaults); raises on a bad value."""
        own = with_defaults(cls.names(), {n: values.get(n) for n in cls.names()})
        raise_problems(problems(**own))
        return cls(**own)

    def problems(self) -> list[str]:
        return problems(**asdict(self)) + grid_problems(self.steps, self.t_den_step)

    def at_steps(self, steps: int) -> "StageSettings":
        """The same settings on a coarser grid (search_steps): t_den keeps its place along the schedule."""
        if steps == self.steps:
            return self
        t_den = min(max(0, round(self.t_den_step * steps / self.steps)), steps - 2)
        return replace(self, steps=steps, t_den_step=t_den)


#: What a stage node says when its stage widgets were overridden by a VMDiff Stage Settings node.
FROM_SETTINGS_NODE = "stage settings from VMDiff Stage Settings (this node's own stage widgets unused)"


def stage_settings_input():
    """The optional VMDIFF_STAGE_SETTINGS socket of Blending Noise, Mixing Denoise and Auto-Tune."""
    from .sockets import StageSettingsType

    return StageSettingsType.Input(
        "stage_settings", optional=True,
        tooltip="Optional: the output of VMDiff Stage Settings, so one node sets steps, t_den, the guidances, the "
                "mix and inversion rules, context and bf16_state for every stage of the graph. When connected it "
                "replaces this node's own widgets of those settings.")


def resolve(stage_settings, values: dict) -> tuple[StageSettings, str]:
    """The stage settings a node runs with: the connected VMDiff Stage Settings, else its own widgets; and the note
    for the node's text ("" when its own widgets were used)."""
    if stage_settings is None:
        return StageSettings.from_inputs(values), ""
    if not isinstance(stage_settings, StageSettings):
        raise VMDiffInputError(f"stage_settings: expected the output of VMDiff Stage Settings, got "
                               f"{type(stage_settings).__name__}")
    return stage_settings, FROM_SETTINGS_NODE
