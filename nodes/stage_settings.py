"""VMDiff Stage Settings: the schedule, guidances, rules and parity knobs shared by every stage of a fusion, set once
for Blending Noise, Mixing Denoise and Auto-Tune."""
from __future__ import annotations

from dataclasses import asdict

from comfy_api.latest import io, ui

from ..vmdiff_comfy.errors import guard_inputs, raise_problems
from ..vmdiff_comfy.stages import settings
from ..vmdiff_comfy.stages.settings import StageSettings
from ..vmdiff_comfy.stages.sockets import StageSettingsType
from ..vmdiff_comfy.discovery import with_discovery


@with_discovery
@guard_inputs
class VMDiffStageSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VMDiffStageSettings",
            display_name="VMDiff Stage Settings",
            category="VMDiff",
            description="One place for the settings every VMDiff stage of a graph shares (steps, t_den, γ_den, "
                        "γ_inv, γ_gen, mix rule, inversion rule, context, bf16_state). Connect it to the "
                        "stage_settings input of Blending Noise, Mixing Denoise and Auto-Tune; it replaces their own "
                        "widgets of these settings. Defaults are the reference's.",
            inputs=settings.inputs(*StageSettings.names()),
            outputs=[StageSettingsType.Output(display_name="stage_settings")],
        )

    @classmethod
    def validate_inputs(cls, **values):  # after @guard_inputs's range checks: t_den on the grid
        return "; ".join(settings.grid_problems(values.get("steps"), values.get("t_den_step"))) or True

    @classmethod
    def execute(cls, **widgets) -> io.NodeOutput:
        stage = StageSettings.from_inputs(widgets)
        raise_problems(settings.grid_problems(stage.steps, stage.t_den_step))  # linked values
        return io.NodeOutput(stage, ui=ui.PreviewText(", ".join(f"{k} = {v}" for k, v in asdict(stage).items())))
