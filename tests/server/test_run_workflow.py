"""The main-job runner (vmdiff_cli/run_workflow.py) on the core-node stand-in workflow."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vmdiff_cli.run_workflow import apply_inputs, synthetic_objects

REPO = Path(__file__).resolve().parents[2]
CORE_UI = REPO / "tests" / "workflows" / "core_two_images_ui.json"
RUNNER = REPO / "vmdiff_cli" / "run_workflow.py"


def runner(*args, workflow=CORE_UI, timeout=300):
    """vmdiff_cli/run_workflow.py on `workflow` with `args` in a child process → CompletedProcess (text)."""
    return subprocess.run([sys.executable, str(RUNNER), "--workflow", str(workflow), *map(str, args)],
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
def test_runner_starts_its_own_server_and_never_overwrites_a_result(tmp_path):
    img1, img2 = synthetic_objects(tmp_path / "in", size=48)
    out = tmp_path / "out"
    for run_number in (1, 2):  # the same command twice into the same folder
        res = runner("--image1", img1, "--image2", img2, "--out", out, "--set", "4.filename_prefix=runner_own")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "ComfyUI started in" in res.stdout
    first, second = sorted(out.glob("runner_own*.png"))  # ComfyUI's own counter goes on across runs
    assert (first.name, second.name) == ("runner_own_00001_.png", "runner_own_00002_.png")
    assert f"output: {second}" in res.stdout
    with Image.open(first) as im:
        assert im.size == (48, 48)
    logs = sorted(out.glob("comfyui-*.log"))  # the log the run names survives it, one per run
    assert len(logs) == 2 and f"ComfyUI log: {logs[1]}" in res.stdout and "Starting server" in logs[1].read_text()


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
    res = runner("--server", comfy_server.url, "--image1", img1, "--image2", img2, "--out", out,
                 "--set", "4.filename_prefix=runner_remote")  # downloaded again: a new name, the first one kept
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list(out.glob("runner_remote*.png"))) == 2


MANUAL = REPO / "workflows" / "vmdiff_manual.json"


def manual_runner(*args, timeout=60):
    return runner(*args, workflow=MANUAL, timeout=timeout)


def test_apply_inputs_reaches_labels_typed_in_a_shared_primitive():
    api = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "cat"}},
           "2": {"class_type": "VMDiffFusionPrompt", "inputs": {"label_1": ["1", 0], "label_2": "cup"}},
           "3": {"class_type": "VMDiffScorer", "inputs": {"label_1": ["1", 0], "label_2": "cup"}}}
    apply_inputs(api, [None, None], ["owl", "jar"], [])
    assert api["1"]["inputs"]["value"] == "owl"  # one place feeds the prompt and the scorer
    assert api["2"]["inputs"]["label_1"] == ["1", 0] and api["2"]["inputs"]["label_2"] == "jar"
    assert api["3"]["inputs"]["label_2"] == "jar"


def test_bad_command_lines_are_refused_before_any_server_starts(tmp_path):
    """Each mistake gives one line naming the input and the fix, in seconds, and never starts ComfyUI."""
    picture = tmp_path / "teapot.png"
    Image.new("RGB", (32, 32), "white").save(picture)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    models = tmp_path / "models"
    (models / "vae").mkdir(parents=True)
    cases = [  # (arguments, what the one error line must say)
        ((), ["no models", "--models-dir", "--tiny"]),
        (("--tiny", "--image1", tmp_path / "missing.png", "--label1", "teapot"), ["--image1", "no such file"]),
        (("--tiny", "--image1", not_an_image, "--label1", "x"), ["--image1", "not an image"]),
        (("--tiny", "--image1", picture), ["--image1", "without --label1", "add --label1"]),
        (("--tiny", "--label1", "teapot"), ["--label1", "without --image1", "add --image1"]),
        (("--tiny", "--image2", picture), ["--image2", "without --label2"]),
        (("--models-dir", tmp_path / "nowhere"), ["--models-dir", "no such folder", "--tiny"]),
        (("--models-dir", models), ["5 model file(s) missing", "vae/ae.safetensors", "diffusion_models/flux1-krea-dev",
                                    "huggingface.co", "--tiny"]),
        (("--workflow", tmp_path / "none.json"), ["--workflow", "no such file"]),
    ]
    for args, words in cases:
        res = manual_runner(*args)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode != 0 and len(lines) == 1, (args, res.stderr)
        assert lines[0].startswith("[run_workflow] error: ") and all(w in lines[0] for w in words), (args, lines)
        assert "ComfyUI started" not in res.stdout and "Traceback" not in res.stderr


def test_help_documents_every_option_and_its_default():
    res = subprocess.run([sys.executable, str(RUNNER), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    for option in ("--tiny", "--models-dir", "--workflow", "--image1", "--image2", "--label1", "--label2", "--server",
                   "--out", "--set", "--timeout"):
        assert option in text
    for default in ("vmdiff_manual.json", "(default: 3600", "output)", "needs --label1", "ComfyUI's counter"):
        assert default in text, default
