"""The real-server harness (vmdiff_cli/comfy_server.py) on workflows of ComfyUI core nodes that load no model."""
from __future__ import annotations

import os

import psutil
import pytest
from PIL import Image

from vmdiff_cli.comfy_server import ExecutionError, PromptError

pytestmark = pytest.mark.slow


def empty_image_prompt(prefix="harness", width=64, height=48, color=0xFF8000):
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def test_core_prompt_runs_and_writes_image(comfy_server):
    srv = comfy_server
    assert psutil.Process(srv.pid).memory_info().rss > 0
    assert "EmptyImage" in srv.object_info()
    entry = srv.run(empty_image_prompt())
    assert entry["status"]["status_str"] == "success"
    (path,) = srv.output_images(entry)
    assert path.is_file() and path.parent == srv.base / "output"
    with Image.open(path) as im:
        assert im.size == (64, 48)
        assert im.convert("RGB").getpixel((3, 3)) == (255, 128, 0)


def test_rejected_prompts_carry_errors_and_server_recovers(comfy_server):
    srv = comfy_server
    with pytest.raises(PromptError) as unknown:
        srv.queue({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    assert unknown.value.error["type"] == "invalid_prompt"
    assert "NoSuchNode" in unknown.value.error["message"]

    with pytest.raises(PromptError) as bad_input:
        srv.queue(empty_image_prompt(width=-5))
    assert "1" in bad_input.value.node_errors
    assert bad_input.value.node_errors["1"]["errors"][0]["type"] == "value_smaller_than_min"

    assert len(srv.output_images(srv.run(empty_image_prompt("after_errors")))) == 1


def test_execution_error_is_reported_and_server_recovers(comfy_server):
    srv = comfy_server
    with pytest.raises(ExecutionError) as failed:
        srv.run(empty_image_prompt("../../outside_output"))
    assert failed.value.entry["status"]["status_str"] == "error"
    assert "outside" in str(failed.value)
    assert len(srv.output_images(srv.run(empty_image_prompt("after_failure", color=0x0000FF)))) == 1


def test_upload_then_load_image_round_trip(comfy_server, tmp_path):
    srv = comfy_server
    name = srv.upload_image(Image.new("RGB", (40, 30), (10, 200, 30)), "harness_upload.png")
    assert (srv.base / "input" / name).is_file()
    entry = srv.run({
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "roundtrip"}},
    })
    (local,) = srv.output_images(entry)
    (downloaded,) = srv.download_images(entry, tmp_path)
    assert local.read_bytes() == downloaded.read_bytes()
    with Image.open(downloaded) as im:
        assert im.size == (40, 30) and im.convert("RGB").getpixel((5, 5)) == (10, 200, 30)


def test_interrupt_and_log(comfy_server):
    comfy_server.interrupt()  # nothing running: must be accepted
    assert "Starting server" in comfy_server.log_text()
    assert os.path.islink(comfy_server.base / "custom_nodes" / "comfyui-vmdiff")
