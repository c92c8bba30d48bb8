"""The CLIs on a user's own ComfyUI: with the pack in ``<ComfyUI>/custom_nodes/<pack>/`` (no COMFYUI_PATH), the main
command and the folder runner start THAT ComfyUI, use its models folder and say so; with ``--server URL`` they use the
running server and start none. Checked on a copy of ComfyUI with a copy of the pack in its custom_nodes."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_folders import TEST_NODES, folder_of, tiny_workflow
from vmdiff_cli.comfy_server import find_comfyui
from vmdiff_cli.run_workflow import synthetic_objects

REPO = Path(__file__).resolve().parents[2]
CORE_UI = REPO / "tests" / "workflows" / "core_two_images_ui.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """<tmp>/ComfyUI (a copy) with this pack copied (its git-tracked files) into custom_nodes/ComfyUI-VMDiff."""
    comfyui = tmp_path_factory.mktemp("user") / "ComfyUI"
    shutil.copytree(find_comfyui(), comfyui, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [comfyui, *comfyui.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    pack = comfyui / "custom_nodes" / "ComfyUI-VMDiff"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        if (REPO / rel).is_file():
            (pack / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, pack / rel)
    return pack


def cli(pack: Path, module: str, *args, timeout=900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=pack, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_main_command_uses_the_comfyui_it_is_installed_in(installed, tmp_path):
    comfyui = installed.parents[1]
    img1, img2 = synthetic_objects(tmp_path / "in", size=40)
    res = cli(installed, "vmdiff_cli.run_workflow", "--workflow", CORE_UI, "--image1", img1, "--image2", img2,
              "--out", tmp_path / "out")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"[run_workflow] ComfyUI: {comfyui} (the ComfyUI this pack is installed in)" in res.stdout
    assert f"[run_workflow] models: {comfyui / 'models'} (that ComfyUI's own" in res.stdout
    assert "ComfyUI started in" in res.stdout and len(list((tmp_path / "out").glob("*.png"))) == 1


def test_the_folder_runner_uses_the_comfyui_it_is_installed_in(installed, tmp_path):
    comfyui = installed.parents[1]
    folder = folder_of(tmp_path / "objects", ["owl.png", "jar.png"])
    res = cli(installed, "vmdiff_cli.folder_runner", folder, "--workflow", tiny_workflow(tmp_path / "tiny.json"),
              "--custom-nodes", TEST_NODES, "--small", "--out", tmp_path / "fused")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"[folder_runner] ComfyUI: {comfyui} (the ComfyUI this pack is installed in)" in res.stdout
    assert "2 of 2 pair(s) done" in res.stdout + res.stderr


def test_server_url_uses_the_running_server_and_starts_none(installed, comfy_server, tmp_path):
    img1, img2 = synthetic_objects(tmp_path / "in", size=40)
    res = cli(installed, "vmdiff_cli.run_workflow", "--workflow", CORE_UI, "--server", comfy_server.url,
              "--image1", img1, "--image2", img2, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"[run_workflow] ComfyUI: the running server at {comfy_server.url}" in res.stdout
    assert "ComfyUI started" not in res.stdout and len(list((tmp_path / "out").glob("*.png"))) == 1
    folder = folder_of(tmp_path / "objects", ["owl.png", "jar.png"])
    res = cli(installed, "vmdiff_cli.folder_runner", folder, "--server", comfy_server.url, "--workflow",
              tiny_workflow(tmp_path / "tiny.json"), "--small", "--out", tmp_path / "fused")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "[folder_runner] ComfyUI:" not in res.stdout and "2 of 2 pair(s) done" in res.stdout + res.stderr
