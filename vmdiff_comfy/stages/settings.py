"""One declaration per stage setting: its default, range, tooltip and the spec's symbol. Every node's widgets, its
``validate_inputs``, the defaults of its ``execute`` and scripts/build_workflows.py's widget values come from here.

Parity and option knobs (``optional=True``) are optional inputs whose defaults are the reference code's, so an API
prompt written before a knob existed still runs."""
from __future__ import annotations

import contextlib
from dataclasses import KW_ONLY, asdict, dataclass, fields, replace
from typing import Any

import comfy.samplers
from comfy_api.latest import io

from ...vmdiff_ops import INVERSION_RULES, MIX_RULES, PRESETS
from ...vmdiff_ops.regional import IMAGE_ATTENTION
from ..errors import VMDiffInputError, number_problem, raise_problems  # noqa: F401  (raise_problems: callers)
from .flow import CONTEXT_MODES

SEED_MAX = 0xffffffffffffffff


@dataclass(frozen=True)
class Setting:
    """A stage setting as a widget, declared once: ``Setting(name, kind, default=…, range=(min, max), step=…,
    symbol=…, tooltip=…)``; ``kind`` is "int", "float", "bool", "string" or "combo". The node's widget, its range
    check (vmdiff_comfy.errors.guard_inputs), the defaults of ``execute`` and the widget values of the shipped
    workflows (scripts/build_workflows.py) all read this declaration: changing a default is this one edit, then
    ``python -m scripts.build_workflows`` (tests/nodes/test_workflow_defaults.py fails until the workflows agree)."""

    name: str
    kind: str
    _: KW_ONLY
    default: Any
    tooltip: str
    symbol: str = ""  # the paper's symbol (γ_den, β1, α…), "" for a setting of this pack only
    range: tuple[float, float] | None = None  # (min, max) of a number, inclusive
    step: float | None = None
    options: tuple = ()
    optional: bool = False
    seeded: bool = False  # control_after_generate (adds a widget value after the seed in UI workflows)

    @property
    def min(self) -> float | None:
        return self.range[0] if self.range else None

    @property
    def max(self) -> float | None:
        return self.range[1] if self.range else None

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
    Setting("seed", "int", default=42, range=(0, SEED_MAX), symbol="ε", seeded=True,
            tooltip="Seed of the starting noise ε."),
    Setting("width", "int", default=512, range=(16, 4096), step=16, symbol="W",
            tooltip="Output width, a multiple of 16 (reference 512)."),
    Setting("height", "int", default=512, range=(16, 4096), step=16, symbol="H",
            tooltip="Output height, a multiple of 16 (reference 512)."),
    # the flow grid needs two steps (σ = 1 and one more before 0)
    Setting("steps", "int", default=20, range=(2, 200), symbol="T",
            tooltip="Steps of the σ grid from σ = 1 to 0 (μ from the image size; reference 20)."),
    Setting("t_den_step", "int", default=10, range=(0, 198), symbol="t_den",
            tooltip=("t_den as a step index: Blending Noise denoises σ_0…σ_t_den, then inverts. 10 of 20 is t ≈ 652 at"
                     " 512²; must be ≤ steps − 2.")),
    Setting("guidance_denoise", "float", default=5.0, range=(0.0, 100.0), step=0.1, symbol="γ_den",
            tooltip="γ_den, Flux guidance while denoising to t_den."),
    Setting("guidance_invert", "float", default=0.0, range=(0.0, 100.0), step=0.1, symbol="γ_inv",
            tooltip="γ_inv, Flux guidance while inverting to σ = 1."),
    Setting("guidance", "float", default=4.0, range=(0.0, 100.0), step=0.1, symbol="γ_gen",
            tooltip="γ_gen, Flux guidance of Mixing Denoise."),
    Setting("beta_1", "float", default=1.0, range=(0.01, 10.0), step=0.01, symbol="β1",
            tooltip="β1, the weight of z1 in SCat."),
    Setting("beta_2", "float", default=1.0, range=(0.01, 10.0), step=0.01, symbol="β2",
            tooltip="β2, the weight of z2 in SCat."),
    Setting("alpha", "float", default=0.5, range=(0.0, 1.0), step=0.001, symbol="α",
            tooltip="α, the weight of image 2 in the token mix SInp (0 = image 1 only)."),
    # part-level fusion (Mixing Denoise with a mask; vmdiff_ops.regional)
    Setting("alpha_masked", "float", default=0.5, range=(0.0, 1.0), step=0.001, symbol="α_masked", optional=True,
            tooltip="α where the mask is 1 (part-level fusion; unused without a mask)."),
    Setting("mask_levels", "int", default=2, range=(2, 8), symbol="K_α", optional=True,
            tooltip=("K: a soft mask is quantised to K α levels between alpha and alpha_masked; each level in use adds"
                     " one block of visual context tokens (cost).")),
    Setting("image_attention", "combo", default="whole_image", options=IMAGE_ATTENTION, optional=True,
            tooltip=("whole_image: image tokens attend to the whole image (regions blend at the border); own_region: "
                     "only to their own region (exact isolation, a hard seam). Either way an image token sees only its"
                     " own α's context block.")),
    Setting("mix_rule", "combo", default="official", symbol="mix", options=tuple(MIX_RULES), optional=True,
            tooltip=("official: the reference's per-token rule on raw tokens (≈ lerp); slerp: the paper's spherical "
                     "mix of directions with norms interpolated; lerp.")),
    Setting("inversion", "combo", default="lagged", options=tuple(INVERSION_RULES), optional=True,
            tooltip=("lagged: the reference's inversion rule (source latent, destination timestep); exact-euler: "
                     "velocity at the source σ.")),
    Setting("context", "combo", default="redux_only", options=CONTEXT_MODES, optional=True,
            tooltip=("redux_only: the reference (Redux tokens only); text_and_redux: the prompt's text tokens first, "
                     "then the Redux tokens; text_and_references (FLUX.2, Kontext): the prompt's text tokens, the "
                     "images as reference latents.")),
    Setting("bf16_state", "bool", default=False, optional=True,
            tooltip=("Parity with the reference code: round ε and the latent to bf16 after every step, and feed the "
                     "DiT bf16-rounded t and guidance (off: float32, ComfyUI's default).")),
    # Auto-Tune's search
    Setting("search_steps", "int", default=0, range=(0, 200),
            tooltip=("Steps while searching (0 = same as steps). Fewer steps make the search cheaper; the winner is "
                     "re-rendered at full steps.")),
    Setting("alpha_min", "float", default=_SEARCH.alpha_min, range=(0.0, 1.0), step=0.001, symbol="α_min",
            optional=True, tooltip="Lower end of the α search (official 0.4)."),
    Setting("alpha_max", "float", default=_SEARCH.alpha_max, range=(0.0, 1.0), step=0.001, symbol="α_max",
            optional=True, tooltip="Upper end of the α search (official 0.6)."),
    Setting("alpha_tol", "float", default=_SEARCH.alpha_tol, range=(0.0001, 0.5), step=0.0001, optional=True,
            tooltip="Golden-section stops when the α bracket is this narrow."),
    Setting("beta_min", "float", default=_SEARCH.beta_min, range=(0.01, 10.0), step=0.01, symbol="β_min",
            optional=True, tooltip="Smallest β tried for the weaker side."),
    Setting("beta_max", "float", default=_SEARCH.beta_max, range=(0.01, 10.0), step=0.01, symbol="β_max",
            optional=True, tooltip="β search bound (the grid stops one step below)."),
    Setting("beta_step", "float", default=_SEARCH.beta_step, range=(0.01, 5.0), step=0.01, optional=True,
            tooltip="Spacing of the β grid."),
    Setting("beta_tol", "float", default=_SEARCH.beta_tol, range=(0.01, 10.0), step=0.01, optional=True,
            tooltip="β search stops when its bracket is this narrow."),
    Setting("beta_stronger", "float", default=_SEARCH.beta_stronger, range=(0.01, 10.0), step=0.01, optional=True,
            tooltip="β of the stronger side during the β stage: 0.5 official (reference code), 1.0 paper."),
    Setting("threshold", "float", default=_SEARCH.threshold, range=(-10.0, 10.0), step=0.01, symbol="τ", optional=True,
            tooltip="Stop once the score exceeds this (2.4)."),
    Setting("rounds", "int", default=_SEARCH.rounds, range=(1, 10), symbol="K", optional=True,
            tooltip=("K: rounds with ε resampled (seed + r) when the score stays below the threshold; 1 official, 3 "
                     "paper.")),
    Setting("candidates_per_batch", "int", default=1, range=(1, 16), optional=True,
            tooltip=("Render this many candidates in one DiT batch: the one the search needs now and those it may need"
                     " after it (3 or 7 use a batch best). Same result as 1; fewer sequential model passes, more "
                     "latents per pass, more VRAM.")),
)

#: VMDiff MagicMix's own settings: any model ComfyUI samples, on that model's own σ grid (not the VMDiff stages').
MAGICMIX = _declare(
    Setting("seed", "int", default=0, range=(0, SEED_MAX), symbol="ε", seeded=True,
            tooltip="Seed of the one noise draw ε (the same draw KSampler makes)."),
    Setting("steps", "int", default=20, range=(1, 1000), symbol="T",
            tooltip="T, steps of the whole σ grid."),
    Setting("scheduler", "combo", default="simple", options=tuple(comfy.samplers.SCHEDULER_NAMES),
            tooltip=("The σ grid from the model's own model_sampling (ComfyUI calculate_sigmas).")),
    Setting("k_max", "float", default=0.6, range=(0.0, 1.0), step=0.01, symbol="K_max",
            tooltip="K_max as a fraction of T: where generation starts from the noised layout."),
    Setting("k_min", "float", default=0.3, range=(0.0, 1.0), step=0.01, symbol="K_min",
            tooltip="K_min as a fraction of T: the layout phase ends here (k_min = k_max: plain img2img from K_max)."),
    Setting("nu", "float", default=0.5, range=(0.0, 1.0), step=0.01, symbol="ν",
            tooltip="ν, the mixing constant: 1 follows the content only, 0 keeps the layout noise path down to K_min."),
    Setting("cfg", "float", default=1.0, range=(0.0, 100.0), step=0.1,
            tooltip=("Classifier-free guidance for ε-prediction models (e.g. 7.5 on SD1.5, needs negative); keep 1 on "
                     "Flux (guidance-distilled: use FluxGuidance).")),
    Setting("width", "int", default=512, range=(8, 16384), step=8,
            tooltip="Output width for text–text mixing (an image layout sets its own size)."),
    Setting("height", "int", default=512, range=(8, 16384), step=8,
            tooltip="Output height for text–text mixing."),
    Setting("reweight_scale", "float", default=1.0, range=(-2.0, 2.0), step=0.05, symbol="s",
            tooltip="s, the attention re-weighting factor of reweight_tokens (1 = off); see reweight_tokens."),
    Setting("reweight_tokens", "string", default="",
            tooltip=("Token positions of the content prompt whose cross-attention is scaled by reweight_scale, "
                     "comma-separated (0 is CLIP's start token, 1 the first word; common words are one token). "
                     "SD1.x/SD2/SDXL UNets: the value vectors of those tokens are multiplied by s in every "
                     "cross-attention layer (attn2 patch, conditional pass only); since to_v has no bias this is "
                     "exactly the paper's scaling of the token's attention column by s (s < 0 removes the concept). "
                     "Not supported on joint-attention models such as Flux (text and image tokens attend jointly "
                     "through biased projections, so there is no per-token attention column to scale): the node "
                     "refuses a token list there.")),
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
        """From a node's inputs (missing or None optional ones at their defaults), as ``@guard_inputs`` checked
        them; the stage that runs with them checks them as a whole (``problems``)."""
        return cls(**with_defaults(cls.names(), {n: values.get(n) for n in cls.names()}))

    def problems(self) -> list[str]:
        """Range and grid problems of these settings as a whole: the stage functions' check (they are also
        called from Python, not only by a guarded node)."""
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
