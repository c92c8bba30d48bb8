"""Every shipped top-level workflow runs on a fresh server as loaded from the template browser: its LoadImage nodes
name the pack's example photos, which the pack copied into the server's empty input folder when it loaded (nothing is
uploaded), and its labels, prompt and seed are the workflow's own. Only what the CPU stand-ins need is changed:
smaller sizes and steps, and the tiny scorer files' names. The copy never overwrites a file already there."""
import json
import logging
from pathlib import Path

import pytest

from scripts.build_workflows import EXAMPLE_IMAGES, EXAMPLE_LABELS
from vmdiff_cli.run_workflow import apply_inputs
from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES as NAMES
from vmdiff_cli.workflow_convert import ui_to_api
from tests.support.reference_stand_ins import REFERENCE_STAND_INS, on_clip_l, reference_stand_ins
from vmdiff_comfy.example_inputs import EXAMPLE_INPUTS, install_example_inputs

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = {p.stem: json.loads(p.read_text()) for p in sorted((REPO / "workflows").glob("*.json"))}
STAND_INS = {  # sizes and steps the CPU stand-ins run in seconds; the scorer loaders' tiny files
    "VMDiffBlendingNoise": {"width": 32, "height": 32, "steps": 2, "t_den_step": 0},
    "VMDiffMixingDenoise": {"steps": 2}, "VMDiffRandomNoise": {"width": 32, "height": 32},
    "EmptySD3LatentImage": {"width": 32, "height": 32}, "KSampler": {"steps": 2},
    "VMDiffMagicMix": {"width": 32, "height": 32, "steps": 4},
    "VMDiffAutoTune": {"width": 32, "height": 32, "steps": 2, "t_den_step": 0, "search_steps": 0,
                       "preset": "custom", "alpha_tol": 0.1, "beta_tol": 2.0, "rounds": 1},
    "VMDiffLoadDINOv2": {"dinov2": NAMES["dinov2"]},
    "VMDiffLoadOpenCLIP": {"model_name": NAMES["open_clip_model"], "checkpoint": NAMES["open_clip"]},
    "VMDiffLoadGroundingDINO": {"config": NAMES["grounding_dino_config"], "checkpoint": NAMES["grounding_dino"],
                                "bert": NAMES["bert"]},
    "VMDiffLoadSAM": {"checkpoint": NAMES["sam"]},
    "VMDiffScorer": {"detect_size": 224},
    **REFERENCE_STAND_INS,
}


def without_t5(api: dict) -> dict:
    """The stand-ins have no T5-XXL: a DualCLIPLoader becomes CLIP-L alone and each text it encodes is padded to
    Flux's 4096 wide by the test-only VMDiffTestFluxText (as tests/server/test_server_baselines.py does)."""
    for dual in [k for k, v in api.items() if v["class_type"] == "DualCLIPLoader"]:
        on_clip_l(api, dual, "VMDiffTestFluxText", 4096)
    return api


def test_example_inputs_are_copied_only_where_absent(tmp_path, caplog):
    mine = tmp_path / EXAMPLE_IMAGES[0]
    mine.write_bytes(b"the user's own picture")
    with caplog.at_level(logging.INFO):
        copied = install_example_inputs(tmp_path)
    assert sorted(p.name for p in copied) == sorted(EXAMPLE_IMAGES[1:])
    assert mine.read_bytes() == b"the user's own picture"  # never overwritten
    for name in EXAMPLE_IMAGES[1:]:
        assert (tmp_path / name).read_bytes() == (EXAMPLE_INPUTS / name).read_bytes()
    assert "left as they are (never overwritten)" in caplog.text and EXAMPLE_IMAGES[0] in caplog.text
    assert install_example_inputs(tmp_path) == []  # a second load copies nothing
    assert sorted(p.name for p in EXAMPLE_INPUTS.glob("*.jpg")) == sorted(EXAMPLE_IMAGES)
    assert sum(p.stat().st_size for p in EXAMPLE_INPUTS.glob("*.jpg")) < 100_000  # the repo stays light


def test_a_read_only_input_folder_costs_only_the_examples(tmp_path, caplog):
    blocked = tmp_path / "file_not_folder"
    blocked.write_text("x")
    with caplog.at_level(logging.WARNING):
        assert install_example_inputs(blocked) == []
    assert "could not copy the example inputs" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_shipped_workflow_runs_as_loaded(vmdiff_server, name):
    api = ui_to_api(WORKFLOWS[name], vmdiff_server.object_info())
    images = sorted(v["inputs"]["image"] for v in api.values() if v["class_type"] == "LoadImage")
    assert set(images) <= set(EXAMPLE_IMAGES) and images
    labels = {v["inputs"].get(k) for v in api.values() for k in ("label_1", "value")
              if v["class_type"] in ("VMDiffFusionPrompt", "PrimitiveString") and isinstance(v["inputs"].get(k), str)}
    assert labels & set(EXAMPLE_LABELS) or name in ("core_two_redux", "vmdiff_magicmix_sd15")
    apply_inputs(api, [], [], [], STAND_INS)
    reference_stand_ins(api)  # Kontext / FLUX.2 files → stand-ins of the same family
    without_t5(api)
    entry = vmdiff_server.run(api, timeout=1500)
    assert vmdiff_server.output_images(entry)
    assert "[VMDiff] example inputs copied into" in vmdiff_server.log_text()
