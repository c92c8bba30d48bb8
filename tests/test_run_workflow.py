"""The main-job runner (tools/run_workflow.py) on the core-node stand-in workflow."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tools.run_workflow import apply_inputs, synthetic_objects

REPO = Path(__file__).resolve().parents[1]
CORE_UI = REPO / "tests" / "workflows" / "core_two_images_ui.json"
RUNNER = REPO / "tools" / "run_workflow.py"


def runner(*args, timeout=300):
    return subprocess.run([sys.executable, str(RUNNER), "--workflow", str(CORE_UI), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_apply_inputs_sets_images_labels_and_overrides():
    api = {"7": {"class_type": "LoadImage", "inputs": {"image": "x"}},
           "3": {"class_type": "LoadImage", "inputs": {"image": "y"}},
           "5": {"class_type": "VMDiffFusionPrompt", "inputs": {"label_1": "", "label_2": ""}}}
    apply_inputs(api, ["a.png", "b.png"], ["cat", None], ["5.steps=8", "5.mode=fast", '3.extra={"k": 1}'])
    assert api["3"]["inputs"]["image"] == "a.png" and api["7"]["inputs"]["image"] == "b.png"
    assert api["5"]["inputs"] == {"label_1": "cat", "label_2": "", "steps": 8, "mode": "fast"}
    assert api["3"]["inputs"]["extra"] == {"k": 1}
    with pytest.raises(SystemExit):
        apply_inputs(api, [None, None], [None, None], ["99.steps=1"])


@pytest.mark.slow
def test_runner_starts_its_own_server(tmp_path):
    img1, img2 = synthetic_objects(tmp_path / "in", size=48)
    out = tmp_path / "out"
    res = runner("--image1", img1, "--image2", img2, "--out", out, "--set", "4.filename_prefix=runner_own")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ComfyUI started in" in res.stdout
    (path,) = out.glob("runner_own*.png")
    assert f"output: {path}" in res.stdout
    with Image.open(path) as im:
        assert im.size == (48, 48)


@pytest.mark.slow
def test_runner_on_running_server_and_failures(comfy_server, tmp_path):
    img1, img2 = synthetic_objects(tmp_path / "in", size=40)
    out = tmp_path / "out"
    res = runner("--server", comfy_server.url, "--image1", img1, "--image2", img2, "--out", out,
                 "--set", "4.filename_prefix=runner_remote")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list(out.glob("runner_remote*.png"))) == 1

    res = runner("--server", comfy_server.url, "--image1", img1, "--image2", img2,
                 "--set", "3.blend_factor=7")  # out of range → rejected by validation
    assert res.returncode == 1 and "FAILED: prompt rejected" in res.stderr
    res = runner("--server", comfy_server.url, "--label1", "cat")
    assert res.returncode != 0 and "no node of the workflow takes label_1" in res.stderr
