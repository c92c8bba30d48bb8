"""The stage settings declared once (vmdiff_comfy/stages/settings.py): the VMDiff Stage Settings node, optional
parity knobs at the reference's defaults, validation generated from the declarations, and the note when a MODEL's
sampling patch is not used."""
import pytest
import torch


from vmdiff_cli import tiny_models

from comfy_extras.nodes_model_advanced import ModelSamplingFlux
from vmdiff_pack.nodes.auto_tune import VMDiffAutoTune
from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
from vmdiff_pack.nodes.stage_settings import VMDiffStageSettings
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.stages.checks import SAMPLING_PATCH_NOTE
from vmdiff_pack.vmdiff_comfy.stages.settings import FROM_SETTINGS_NODE, SETTINGS, StageSettings

SIZE = dict(width=32, height=32)
STAGE = dict(steps=5, t_den_step=2, guidance_denoise=3.0, guidance_invert=0.5, guidance=2.5, mix_rule="slerp",
             inversion="exact-euler", context="text_and_redux", bf16_state=True)


@pytest.fixture(scope="module")
def parts():
    cv, style = tiny_models.tiny_clip_vision(seed=0), tiny_models.tiny_style_model(seed=0)
    images = [torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    z = [VMDiffReduxEncode.execute(cv, style, im).result[0] for im in images]
    return {"model": tiny_models.tiny_flux(seed=0), "z": z,
            "cond": tiny_models.tiny_flux_conditioning(seed=0, text_tokens=3)}


def fuse(p, model=None, blend=None, mix=None):
    bn = VMDiffBlendingNoise.execute(model or p["model"], p["z"][0], p["z"][1], p["cond"], seed=3, **SIZE,
                                     **(blend or {}))
    md = VMDiffMixingDenoise.execute(model or p["model"], bn.result[0], p["z"][0], p["z"][1], p["cond"], alpha=0.4,
                                     **(mix or {}))
    return bn, md


def test_stage_settings_node_drives_both_stages_like_their_widgets(parts):
    settings = VMDiffStageSettings.execute(**STAGE).result[0]
    assert settings == StageSettings(**STAGE)
    blend_widgets = {k: STAGE[k] for k in ("steps", "t_den_step", "guidance_denoise", "guidance_invert",
                                           "inversion", "context", "bf16_state")}
    mix_widgets = {k: STAGE[k] for k in ("steps", "guidance", "mix_rule", "context", "bf16_state")}
    bn_w, md_w = fuse(parts, blend=blend_widgets, mix=mix_widgets)
    # the node's own widgets are at other values: the connected settings replace them
    bn_s, md_s = fuse(parts, blend={"steps": 9, "stage_settings": settings},
                      mix={"guidance": 7.0, "mix_rule": "lerp", "stage_settings": settings})
    assert torch.equal(bn_w.result[0]["samples"], bn_s.result[0]["samples"])
    assert torch.equal(md_w.result[0]["samples"], md_s.result[0]["samples"])
    assert FROM_SETTINGS_NODE in bn_s.ui.as_dict()["text"][0] and FROM_SETTINGS_NODE in md_s.ui.as_dict()["text"][0]
    assert FROM_SETTINGS_NODE not in bn_w.ui.as_dict()["text"][0]
    with pytest.raises(VMDiffInputError, match="stage_settings: expected the output of VMDiff Stage Settings"):
        fuse(parts, blend={"stage_settings": {"steps": 5}})


def test_optional_knobs_left_out_run_at_the_reference_defaults(parts):
    """An API prompt written before the parity knobs existed: the optional inputs are simply absent."""
    knobs = {n: s.default for n, s in SETTINGS.items() if s.optional}
    assert {"inversion", "context", "bf16_state", "mix_rule"} <= set(knobs)
    assert (knobs["inversion"], knobs["context"], knobs["bf16_state"], knobs["mix_rule"]) == (
        "lagged", "redux_only", False, "official")
    bare_bn, bare_md = fuse(parts, blend=dict(steps=4, t_den_step=1), mix=dict(steps=4))
    full_bn, full_md = fuse(parts, blend=dict(steps=4, t_den_step=1, inversion="lagged", context="redux_only",
                                              bf16_state=False),
                            mix=dict(steps=4, mix_rule="official", context="redux_only", bf16_state=False))
    assert torch.equal(bare_bn.result[0]["samples"], full_bn.result[0]["samples"])
    assert torch.equal(bare_md.result[0]["samples"], full_md.result[0]["samples"])
    for cls in (VMDiffBlendingNoise, VMDiffMixingDenoise, VMDiffAutoTune, VMDiffStageSettings):
        optional = cls.INPUT_TYPES().get("optional", {})
        for name in ("inversion", "context", "bf16_state", "mix_rule"):
            if name in {**cls.INPUT_TYPES()["required"], **optional}:
                assert name in optional, (cls.__name__, name)


@pytest.mark.parametrize("cls, values, message", [
    (VMDiffBlendingNoise, dict(steps=8, t_den_step=7), "t_den_step: 7 is outside the 8-step grid"),
    (VMDiffBlendingNoise, dict(inversion="euler"), "inversion: unknown value 'euler'"),
    (VMDiffBlendingNoise, dict(guidance_denoise=-1.0), "guidance_denoise: -1.0 is below the minimum 0.0"),
    (VMDiffMixingDenoise, dict(alpha=1.5), "alpha: 1.5 is above the maximum 1.0"),
    (VMDiffMixingDenoise, dict(mix_rule="cubic"), "mix_rule: unknown value 'cubic'"),
    (VMDiffStageSettings, dict(steps=6, t_den_step=5), "t_den_step: 5 is outside the 6-step grid"),
    (VMDiffAutoTune, dict(alpha_min=0.7, alpha_max=0.6), "alpha_min: 0.7 must be below alpha_max"),
    (VMDiffAutoTune, dict(context="text"), "context: unknown value 'text'"),
    (VMDiffAutoTune, dict(rounds=0), "rounds: 0 is below the minimum 1"),
])
def test_validation_comes_from_the_declarations(cls, values, message):
    assert message in cls.validate_inputs(**values)
    assert cls.validate_inputs(**{k: None for k in values}) is True  # linked inputs: checked when the node runs


def test_widgets_carry_the_declared_default_range_and_tooltip():
    spec = {**VMDiffBlendingNoise.INPUT_TYPES()["required"], **VMDiffBlendingNoise.INPUT_TYPES()["optional"]}
    t_den = spec["t_den_step"][1]
    declared = SETTINGS["t_den_step"]
    assert (t_den["default"], t_den["min"], t_den["max"]) == (declared.default, declared.min, declared.max)
    assert t_den["tooltip"].startswith(declared.tooltip)
    at = {**VMDiffAutoTune.INPUT_TYPES()["required"], **VMDiffAutoTune.INPUT_TYPES()["optional"]}
    assert all(at[n][1].get("tooltip") for n in ("guidance_denoise", "guidance_invert", "inversion", "bf16_state"))


def test_a_sampling_patch_the_stages_override_is_named_in_the_node_text(parts):
    patched = ModelSamplingFlux().patch(parts["model"], max_shift=2.0, base_shift=0.1, width=1024, height=1024)[0]
    plain_bn, plain_md = fuse(parts, blend=dict(steps=4, t_den_step=1), mix=dict(steps=4))
    bn, md = fuse(parts, model=patched, blend=dict(steps=4, t_den_step=1), mix=dict(steps=4))
    assert SAMPLING_PATCH_NOTE in bn.ui.as_dict()["text"][0] and SAMPLING_PATCH_NOTE in md.ui.as_dict()["text"][0]
    assert SAMPLING_PATCH_NOTE not in plain_bn.ui.as_dict()["text"][0]
    # the σ grid comes from the image size: the patch changes nothing
    assert torch.equal(bn.result[0]["samples"], plain_bn.result[0]["samples"])
    assert torch.equal(md.result[0]["samples"], plain_md.result[0]["samples"])
