"""Old prompts keep running: every shipped API twin with all its optional widget inputs removed
(what an API prompt written before the parity/option knobs existed looks like) runs through the server, the knobs
at the reference's defaults."""
import json
from pathlib import Path

import pytest

from vmdiff_cli.run_workflow import apply_inputs
from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES as NAMES
from tests.support.tiny_folders import on_tiny_loaders
from tests.support.workflows import shrink

pytestmark = pytest.mark.slow
API = Path(__file__).resolve().parents[2] / "workflows" / "api"
#: small sizes and short grids on the stand-ins (required inputs only: the optional ones are stripped)
SMALL = {**shrink(VMDiffAutoTune={"search_steps": 0}, VMDiffMagicMix={"width": 32, "height": 32}),
         # the release file names of the workflows → the tiny scorer files in the same models folder
         "VMDiffLoadDINOv2": {"dinov2": NAMES["dinov2"]},
         "VMDiffLoadOpenCLIP": {"model_name": NAMES["open_clip_model"], "checkpoint": NAMES["open_clip"]},
         # the shipped graphs' Hugging Face folder format (no BERT folder: optional, so it is stripped)
         "VMDiffLoadGroundingDINO": {"checkpoint": NAMES["grounding_dino_hf"]},
         "VMDiffLoadSAM": {"checkpoint": NAMES["sam"]}, "VMDiffScorer": {"detect_size": 224}}
#: Run here: every shipped API twin except those needing more than the stand-ins give: core_two_redux and
#: vmdiff_baselines load T5-XXL (test_server_baselines rewires that branch), vmdiff_full searches with the official
#: search options once they are stripped (minutes on the CPU stand-ins).
GRAPHS = ["vmdiff_magicmix_flux", "vmdiff_magicmix_sd15", "vmdiff_manual", "vmdiff_manual_scored",
          "vmdiff_three_objects", "vmdiff_vs_magicmix"]


def strip_optional(api: dict, object_info: dict) -> list[str]:
    """Remove every optional input given as a value (not a link); returns "class.input" of each removed."""
    removed = []
    for node in api.values():
        optional = object_info[node["class_type"]]["input"].get("optional", {})
        for name in [n for n, v in node["inputs"].items() if n in optional and not isinstance(v, list)]:
            del node["inputs"][name]
            removed.append(f"{node['class_type']}.{name}")
    return removed



@pytest.mark.parametrize("name", GRAPHS)
def test_stripped_api_twin_runs(vmdiff_server, three_object_images, name):
    api = json.loads((API / f"{name}.json").read_text())
    removed = strip_optional(api, vmdiff_server.object_info())
    loaders = sum(v["class_type"] == "LoadImage" for v in api.values())
    apply_inputs(api, three_object_images[:loaders], ["owl", "jar"] if any(
        "label_1" in v["inputs"] for v in api.values()) else [], [], SMALL)
    if not any(v["class_type"] == "CheckpointLoaderSimple" for v in api.values()):  # a Flux graph (SD1.5: as is)
        on_tiny_loaders(api)  # the prompt's form is tested, not the loaders (run as shipped in test_server_templates)
    for node in api.values():  # a tiny Auto-Tune search: only its required inputs are set
        if node["class_type"] == "VMDiffAutoTune":
            assert "alpha_tol" not in node["inputs"]
    entry = vmdiff_server.run(api, timeout=1200)
    assert entry["status"]["status_str"] == "success", (name, removed, entry["status"])
    assert removed, name  # every one of these VMDiff graphs had optional knobs to strip
