"""Ranges hold whatever the source of a value: every numeric input of every node of the pack (walked from the comfy_api
schemas ComfyUI registers), typed or linked, at its min, max, just outside and NaN. Typed values meet
``validate_inputs``; a linked value is None there and reaches ``execute``, which refuses it by name before any model
call."""
import math

import pytest
import torch

from vmdiff_cli.comfy_env import load_pack

pack = load_pack()
from comfy_api.latest import io

from vmdiff_pack.nodes import NODES
from vmdiff_pack.nodes.blending_noise import VMDiffBlendingNoise
from vmdiff_pack.nodes.mix_tokens_n import VMDiffMixTokensN
from vmdiff_pack.nodes.mixing_denoise import VMDiffMixingDenoise
from vmdiff_pack.nodes.random_noise import VMDiffRandomNoise
from vmdiff_pack.nodes.redux_encode import VMDiffReduxEncode
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
from vmdiff_pack.vmdiff_comfy.stages.checks import schema_problems


def numeric_inputs():
    for node in NODES:
        for spec in node.define_schema().inputs:
            if isinstance(spec, (io.Int.Input, io.Float.Input)):
                yield node, spec


def values_of(spec):
    """(case, value, must be refused) for one numeric input."""
    is_int = isinstance(spec, io.Int.Input)
    step = 1 if is_int else (spec.step or 0.01)
    cases = [("min", spec.min, False), ("max", spec.max, False), ("NaN", math.nan, True), ("+inf", math.inf, True)]
    if spec.min is not None:
        cases.append(("below min", spec.min - step, True))
    if spec.max is not None:
        cases.append(("above max", spec.max + step, True))
    return [c for c in cases if c[1] is not None]


CASES = [(node, spec, case, value, refused) for node, spec in numeric_inputs() for case, value, refused in
         values_of(spec)]
IDS = [f"{node.__name__}.{spec.id}={case}" for node, spec, case, _, _ in CASES]


def test_the_walk_covers_every_node_with_numbers():
    walked = {node.__name__ for node, _ in numeric_inputs()}
    assert {"VMDiffBlendingNoise", "VMDiffMixingDenoise", "VMDiffAutoTune", "VMDiffMagicMix", "VMDiffMixTokensN",
            "VMDiffScorer", "VMDiffRandomNoise", "VMDiffStageSettings"} <= walked
    assert len(CASES) > 200
    for node, spec in numeric_inputs():
        assert spec.min is not None and spec.max is not None, f"{node.__name__}.{spec.id} has no declared range"


@pytest.mark.parametrize("node, spec, case, value, refused", CASES, ids=IDS)
def test_typed_value_is_validated_by_name(node, spec, case, value, refused):
    """A typed widget value (every other input linked: None at validation)."""
    verdict = node.validate_inputs(**{spec.id: value})
    if refused:
        assert isinstance(verdict, str) and verdict.startswith(f"{spec.id}:"), verdict
    else:
        assert verdict is True or (isinstance(verdict, str) and spec.id in verdict), verdict


@pytest.mark.parametrize("node, spec, case, value, refused", CASES, ids=IDS)
def test_linked_value_is_checked_when_the_node_runs(node, spec, case, value, refused):
    """A linked value: validation sees None and passes it; execute refuses it by name before touching any model
    (the other inputs are not even given: a refusal comes first, else the call fails on the missing arguments)."""
    assert node.validate_inputs(**{spec.id: None}) in (True, None) or spec.id not in str(
        node.validate_inputs(**{spec.id: None}))
    if refused:
        with pytest.raises(VMDiffInputError, match=f"^{spec.id}: "):
            node.execute(**{spec.id: value})
    else:
        assert schema_problems(node, {spec.id: value}) == []


@pytest.mark.parametrize("node, name, value", [
    ("VMDiffAutoTune", "alpha_tol", 0.0), ("VMDiffAutoTune", "beta_step", 0.0), ("VMDiffAutoTune", "rounds", 50),
    ("VMDiffAutoTune", "candidates_per_batch", 1000), ("VMDiffAutoTune", "guidance", math.nan),
    ("VMDiffBlendingNoise", "width", 2 ** 17), ("VMDiffBlendingNoise", "guidance_denoise", math.nan),
    ("VMDiffMixingDenoise", "guidance", math.nan), ("VMDiffMixingDenoise", "alpha", -math.inf),
    ("VMDiffMagicMix", "nu", math.nan), ("VMDiffMagicMix", "width", 2 ** 17), ("VMDiffMixTokensN", "weight_2", -1.0),
    ("VMDiffScorer", "box_threshold", math.nan), ("VMDiffScorer", "detect_size", 10 ** 6),
    ("VMDiffRandomNoise", "height", 2 ** 17), ("VMDiffStageSettings", "guidance", math.nan),
])
def test_the_reported_linked_values_are_refused_by_name(node, name, value):
    cls = next(n for n in NODES if n.__name__ == node)
    with pytest.raises(VMDiffInputError, match=f"^{name}: "):
        cls.execute(**{name: value})


@pytest.fixture(scope="module")
def models(stand_ins):
    m = dict(model=stand_ins["model"], cond=stand_ins["cond"])
    cv, style = stand_ins["clip_vision"], stand_ins["style"]
    m["tokens"] = [VMDiffReduxEncode.execute(cv, style, torch.rand(1, 40, 56, 3, generator=torch.Generator()
                                                                   .manual_seed(s))).result[0] for s in (1, 2)]
    return m


def test_real_runs_at_the_extremes(models):
    """A few widgets at their min/max run for real on the tiny models (the others: accepted by validation and the
    run-time check above, or refused by name)."""
    z1, z2 = models["tokens"]
    eps = VMDiffRandomNoise.execute(seed=2 ** 64 - 1, width=16, height=16).result[0]
    assert eps["samples"].shape[-2:] == (2, 2)
    latent = VMDiffMixingDenoise.execute(models["model"], eps, z1, z2, models["cond"], steps=2, alpha=1.0,
                                         guidance=100.0).result[0]["samples"]
    assert torch.isfinite(latent).all()
    out = VMDiffBlendingNoise.execute(models["model"], z1, z2, models["cond"], seed=0, width=16, height=16, steps=2,
                                      t_den_step=0, beta_1=0.01, beta_2=10.0, guidance_denoise=0.0).result[0]
    assert torch.isfinite(out["samples"]).all()
    sinp, _ = VMDiffMixTokensN.execute(z1, z2, weight_1=0.0, weight_2=100.0).result
    assert torch.allclose(sinp.tokens, z2.tokens, atol=1e-5)


def test_blending_noise_one_step_is_refused_at_validation_by_name():
    assert VMDiffBlendingNoise.validate_inputs(steps=1, t_den_step=0).startswith("steps:")


def test_a_typed_combo_is_still_checked_on_nodes_that_had_no_validation():
    assert VMDiffMixTokensN.validate_inputs(mix_rule="nope").startswith("mix_rule: unknown value")
