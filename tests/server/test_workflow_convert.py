"""UI-format → API-format conversion (vmdiff_cli/workflow_convert.py), checked against a live server's /object_info."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vmdiff_cli.workflow_convert import ui_to_api, widget_slots

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CORE_UI = REPO / "tests" / "workflows" / "core_two_images_ui.json"


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def test_widget_slots_follow_the_frontend(object_info):
    assert widget_slots(object_info["LoadImage"]) == ["image", None]  # + the "upload" button value
    assert widget_slots(object_info["KSampler"]) == [
        "seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"]  # None = control_after_generate
    assert widget_slots(object_info["ImageBlend"]) == ["blend_factor", "blend_mode"]  # V3 "COMBO" type
    assert widget_slots(object_info["SaveImage"]) == ["filename_prefix"]
    assert widget_slots(object_info["RandomNoise"]) == ["noise_seed", None]


def test_ksampler_node_with_linked_widget(object_info):
    ui = {"nodes": [
        {"id": 5, "type": "KSampler", "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": None},
                    {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 1}],
         "widgets_values": [42, "randomize", 4, 1.0, "euler", "simple", 1.0]},
        {"id": 6, "type": "RandomNoise", "mode": 0, "inputs": [], "widgets_values": [7, "fixed"]}],
        "links": [[1, 6, 0, 5, 1, "INT"]]}
    api = ui_to_api(ui, object_info)
    assert api["5"]["inputs"] == {"seed": ["6", 0], "steps": 4, "cfg": 1.0, "sampler_name": "euler",
                                  "scheduler": "simple", "denoise": 1.0}
    assert api["6"]["inputs"] == {"noise_seed": 7}


def test_core_workflow_structure(object_info):
    api = ui_to_api(json.loads(CORE_UI.read_text()), object_info)
    assert sorted(api, key=int) == ["1", "2", "3", "4"]  # Reroute, Primitive, bypassed, muted and Note left out
    assert api["1"] == {"class_type": "LoadImage", "inputs": {"image": "object_a.png"},
                        "_meta": {"title": "Load Image"}}
    assert api["3"]["inputs"] == {"image1": ["1", 0], "image2": ["2", 0], "blend_factor": 0.25, "blend_mode": "normal"}
    assert api["4"]["inputs"] == {"images": ["3", 0], "filename_prefix": "core_blend"}  # through the bypassed invert


def test_converted_workflow_runs_on_server(comfy_server, object_info):
    srv = comfy_server
    srv.upload_image(Image.new("RGB", (32, 32), (200, 0, 0)), "object_a.png")
    srv.upload_image(Image.new("RGB", (32, 32), (0, 0, 200)), "object_b.png")
    entry = srv.run(ui_to_api(json.loads(CORE_UI.read_text()), object_info))
    (path,) = srv.output_images(entry)
    with Image.open(path) as im:
        r, g, b = im.convert("RGB").getpixel((16, 16))
    assert abs(r - 150) <= 2 and g == 0 and abs(b - 50) <= 2  # 0.75·a + 0.25·b, not inverted


def test_cli_matches_function(comfy_server, object_info, tmp_path):
    oi_path = tmp_path / "object_info.json"
    oi_path.write_text(json.dumps(object_info))
    expected = ui_to_api(json.loads(CORE_UI.read_text()), object_info)
    for source in (["--object-info", str(oi_path)], ["--server", comfy_server.url]):
        out = tmp_path / "api.json"
        subprocess.run([sys.executable, str(REPO / "vmdiff_cli" / "workflow_convert.py"), str(CORE_UI), *source,
                        "-o", str(out)], check=True, timeout=120)
        assert json.loads(out.read_text()) == expected


def test_unknown_class_and_wrong_widget_count_are_errors(object_info):
    with pytest.raises(KeyError, match="NotInstalled"):
        ui_to_api({"nodes": [{"id": 1, "type": "NotInstalled", "mode": 0}], "links": []}, object_info)
    with pytest.raises(ValueError, match="widget values"):
        ui_to_api({"nodes": [{"id": 1, "type": "SaveImage", "mode": 0, "widgets_values": ["a", "b"]}], "links": []},
                  object_info)


def test_missing_trailing_widgets_get_defaults(object_info):
    # CLIPLoader grew an optional "device" widget; a workflow saved before that has two values
    saved = {"nodes": [{"id": 1, "type": "CLIPLoader", "mode": 0,
                        "widgets_values": ["clip_l.safetensors", "stable_diffusion"]}], "links": []}
    api = ui_to_api(saved, object_info)
    assert api["1"]["inputs"] == {"clip_name": "clip_l.safetensors", "type": "stable_diffusion", "device": "default"}
