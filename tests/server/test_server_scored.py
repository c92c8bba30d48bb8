"""workflows/vmdiff_manual_scored.json through a real ComfyUI server: the manual fusion on the tiny loaders, scored
by the four scorer loaders on the tiny scorer files (vmdiff_cli/tiny_scorers), with the breakdown shown as text."""
import json
import re
from pathlib import Path

import pytest

from tests.support.tiny_folders import on_tiny_loaders
from tests.support.workflows import drop_cached_outputs, node_id, shrink, workflow_prompt
from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES as NAMES
from vmdiff_cli.workflow_convert import ui_to_api

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SCORED_UI = REPO / "workflows" / "vmdiff_manual_scored.json"
SCORED_API = REPO / "workflows" / "api" / "vmdiff_manual_scored.json"
SMALL = {**shrink("VMDiffBlendingNoise", "VMDiffMixingDenoise"),
         # the release file names of the workflow → the tiny scorer files in the same models folder
         "VMDiffLoadDINOv2": {"dinov2": NAMES["dinov2"]},
         "VMDiffLoadOpenCLIP": {"model_name": NAMES["open_clip_model"], "checkpoint": NAMES["open_clip"]},
         "VMDiffLoadGroundingDINO": {"checkpoint": NAMES["grounding_dino_hf"]},  # the transformers folder format
         "VMDiffScorer": {"detect_size": 224}}  # the reference's 800 px costs 4× more on the CPU
TERMS = ("S", "D1", "D2", "T1", "T2", "n1", "n2")


def scored_prompt(server, uploaded, **inputs):
    """The scored workflow at SMALL: the fusion on the tiny loaders, the scorers on their real loaders (the tiny
    scorer files)."""
    return on_tiny_loaders(workflow_prompt(server, "vmdiff_manual_scored", uploaded, overrides=SMALL, **inputs))


def parse_breakdown(text):
    values = dict(re.findall(r"(\w+) = (-?[0-9.]+)", text.splitlines()[0]))
    return {k: float(values[k]) for k in TERMS}


def test_api_twin_matches(vmdiff_server):
    assert json.loads(SCORED_API.read_text()) == ui_to_api(json.loads(SCORED_UI.read_text()),
                                                           vmdiff_server.object_info())


def test_scored_workflow_prints_the_breakdown_and_reuses_the_scorer(vmdiff_server, object_images):
    uploaded = object_images
    drop_cached_outputs(vmdiff_server)  # another test may have run this scorer: a cached node reports no text
    api = scored_prompt(vmdiff_server, uploaded, alpha=0.5)
    entry = vmdiff_server.run(api, timeout=900)
    score_node, scorer_node = node_id(api, "VMDiffSimilarityScore"), node_id(api, "VMDiffScorer")
    (breakdown,) = entry["outputs"][score_node]["text"]
    terms = parse_breakdown(breakdown)
    assert breakdown.startswith("[0] S = ") and "box [" in breakdown  # box isolation found a box
    assert terms["n1"] == pytest.approx((terms["T1"] - 0.15) / 0.3, abs=2e-4)
    assert terms["S"] == pytest.approx(2 * min(terms["D1"], terms["D2"]) + 2 * min(terms["n1"], terms["n2"]),
                                       abs=5e-4)
    (summary,) = entry["outputs"][scorer_node]["text"]
    assert "isolation: box" in summary and "['A  owl .']" in summary and "source 1:" in summary
    loader_texts = [entry["outputs"][node_id(api, c)]["text"][0] for c in
                    ("VMDiffLoadDINOv2", "VMDiffLoadOpenCLIP", "VMDiffLoadGroundingDINO")]
    assert all("M parameters" in t for t in loader_texts), loader_texts
    views = vmdiff_server.output_images(entry, types=("temp",))
    assert len(views) >= 3  # the two sources and the fused image, as the encoders saw them

    # Another α: the fusion and its score run again; the loaders and the scorer (sources, labels) stay cached.
    again = vmdiff_server.run(scored_prompt(vmdiff_server, uploaded, alpha=0.8), timeout=900)
    cached = [n for m in again["status"]["messages"] if m[0] == "execution_cached" for n in m[1]["nodes"]]
    assert scorer_node in cached and node_id(api, "VMDiffLoadGroundingDINO") in cached
    assert score_node not in cached
    assert parse_breakdown(again["outputs"][score_node]["text"][0]) != terms
