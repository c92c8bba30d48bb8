"""The tests leave the ComfyUI tree as they found it (it is read-only by contract): in-process, ComfyUI's node import
(which creates ``input/3d``), the pack's start (which copies its example photos into the input folder), a SaveImage
and a PreviewImage write under the private folder of vmdiff_cli.comfy_env; a server writes under its
``--base-directory``. Checked on a private copy of ComfyUI (a pristine tree: no ``input/3d``, no example photos),
snapshotted (every path, size and mtime) before and after."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmdiff_cli.comfy_server import ComfyServer, find_comfyui

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (path.is_dir(), st.st_size if not path.is_dir() else 0, st.st_mtime_ns)
    return out


def changes(before: dict, after: dict) -> list[str]:
    return ([f"new {p}" for p in sorted(set(after) - set(before))]
            + [f"gone {p}" for p in sorted(set(before) - set(after))]
            + [f"changed {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]])


@pytest.fixture(scope="module")
def pristine_comfyui(tmp_path_factory) -> Path:
    """A copy of ComfyUI 0.8.0 as released: without what earlier non-hermetic runs left in its input folder."""
    copy = tmp_path_factory.mktemp("comfyui") / "ComfyUI"
    leftovers = shutil.ignore_patterns("__pycache__", "3d", "vmdiff_*", "vmdiff-*")
    shutil.copytree(find_comfyui(), copy, symlinks=True, ignore=leftovers)
    for path in [copy, *copy.rglob("*")]:  # the copy of a read-only tree: writable for the test's cleanup
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    assert not (copy / "input" / "3d").exists()
    return copy


IN_PROCESS = """
import asyncio, json, sys
import torch
sys.path.insert(0, {repo!r})
from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack
boot_comfy_inprocess()
pack = load_pack()
asyncio.run(pack.comfy_entrypoint())  # the pack's start: example photos into the input folder
import folder_paths, nodes
image = torch.rand(1, 16, 16, 3)
nodes.SaveImage().save_images(image, "hermetic")
nodes.PreviewImage().save_images(image)
print("DIRS", json.dumps([folder_paths.get_input_directory(), folder_paths.get_output_directory(),
                          folder_paths.get_temp_directory(), folder_paths.get_user_directory()]))
"""


def test_in_process_comfyui_writes_nothing_into_its_tree(pristine_comfyui):
    before = snapshot(pristine_comfyui)
    env = {**os.environ, "COMFYUI_PATH": str(pristine_comfyui), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("VMDIFF_COMFY_BASE_DIR", None)
    done = subprocess.run([sys.executable, "-c", IN_PROCESS.format(repo=str(REPO))], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    dirs = json.loads(done.stdout.split("DIRS ", 1)[1].splitlines()[0])
    assert all(not Path(d).resolve().is_relative_to(pristine_comfyui.resolve()) for d in dirs), dirs
    assert changes(before, snapshot(pristine_comfyui)) == []


def test_a_server_writes_nothing_into_its_comfyui_tree(pristine_comfyui, tmp_path):
    before = snapshot(pristine_comfyui)
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hermetic"}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    with ComfyServer(None, comfyui=pristine_comfyui) as server:
        entry = server.run(prompt, timeout=300)
        assert entry["status"]["status_str"] == "success"
        image = server.upload_image(REPO / "example_inputs" / "vmdiff_example_cat.jpg", "hermetic_upload.jpg")
        assert image == "hermetic_upload.jpg"
    assert changes(before, snapshot(pristine_comfyui)) == []
