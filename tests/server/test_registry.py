"""Registry-ready: comfy-cli's own `comfy node validate` passes on pyproject.toml, and `comfy node pack` holds only
what runs inside ComfyUI (no tests, benchmarks, CI, scripts, tools, docs). comfy-cli is a dev-only tool: the test
installs it into its own venv under .cache/ (never the pack's requirements, never ComfyUI's venv). Both commands run
with every proxy pointing at a closed port: they need no network."""
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMFY_CLI = "comfy-cli==1.23.0"
CLI_VENV = REPO / ".cache" / "comfy-cli-venv"
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
DEV_ONLY = ("tests/", "benchmarks/", ".ci/", "scripts/", "tools/", ".cache/", ".venv/", "output/")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """Run `comfy <args>` in the repo (comfy-cli installed once into .cache/comfy-cli-venv), offline."""
    exe = CLI_VENV / "bin" / "comfy"
    # a venv made under another path (a moved checkout, a worktree sharing .cache) has scripts whose #! is gone
    if not exe.exists() or not Path(exe.read_text().splitlines()[0].removeprefix("#!").strip()).exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(CLI_VENV)], check=True)
        subprocess.run([str(CLI_VENV / "bin" / "python"), "-m", "pip", "install", "-q", COMFY_CLI], check=True)
    home = tmp_path_factory.mktemp("comfy_cli_home")  # its config and tracking state, not the user's

    def run(*args):
        env = {**os.environ, "HOME": str(home), **NO_NETWORK}
        return subprocess.run([str(exe), "--skip-prompt", "--no-enable-telemetry", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    return run


def test_metadata_declares_what_the_registry_asks_for():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["requires-comfyui"].startswith(">=0.8")
    assert comfy["Icon"].endswith("docs/icon.png") and (REPO / "docs" / "icon.png").is_file()
    assert meta["project"]["license"] == {"text": "Apache-2.0"}
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    # the dependency specs are the requirements.txt lines, same order
    reqs = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert meta["project"]["dependencies"] == reqs


def test_comfy_node_validate_passes(comfy):
    res = comfy("node", "validate")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "All validation checks passed" in res.stdout + res.stderr


@pytest.fixture(scope="module")
def packed(comfy, tmp_path_factory) -> tuple[list[str], Path]:
    """`comfy node pack` of the repo: (the archive's names, the archive unpacked into a fresh folder)."""
    archive = REPO / "node.zip"
    assert not archive.exists(), "a node.zip is already in the repo root: move it away first"
    try:
        res = comfy("node", "pack")
        assert res.returncode == 0, res.stdout + res.stderr
        unpacked = tmp_path_factory.mktemp("registry") / "comfyui-vmdiff"
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            zf.extractall(unpacked)
    finally:
        archive.unlink(missing_ok=True)
    return names, unpacked


def test_comfy_node_pack_holds_only_what_runs_in_comfyui(packed):
    names, _ = packed
    assert not [n for n in names if n.startswith(DEV_ONLY)]
    for needed in ("__init__.py", "nodes/__init__.py", "vmdiff_ops/__init__.py", "vmdiff_comfy/example_inputs.py",
                   "web/vmdiff_auto_tune.js", "workflows/vmdiff_manual.json", "workflows/vmdiff_manual.jpg",
                   "example_inputs/vmdiff_example_cat.jpg", "requirements.txt", "LICENSE", "pyproject.toml",
                   "vmdiff_cli/folder_runner.py", "vmdiff_cli/folder_ray.py", "vmdiff_cli/run_workflow.py",
                   "vmdiff_cli/comfy_server.py", "vmdiff_cli/tiny_models.py", "vmdiff_cli/model_downloads.py",
                   "subgraphs/VMDiff Fuse.json", "subgraphs/VMDiff Auto-Tune Fuse.json", "locales/en/main.json",
                   "locales/zh/main.json", "locales/zh-TW/main.json", "locales/pt-BR/main.json"):
        assert needed in names, needed
    # the blueprints and every language ship
    assert sorted(n for n in names if n.startswith("locales/")) == sorted(
        f"locales/{p.parent.name}/main.json" for p in (REPO / "locales").glob("*/main.json"))
    assert {n for n in names if n.startswith("subgraphs/")} == {f"subgraphs/{p.name}"
                                                                  for p in (REPO / "subgraphs").glob("*.json")}


@pytest.mark.slow
def test_the_folder_runner_runs_from_the_registry_pack(packed, tmp_path):
    """What a Registry install holds runs the folder runner (`python -m vmdiff_cli.folder_runner` in the pack's
    folder) on the stand-ins: the test-only tiny loaders, a server of its own."""
    from tests.support.tiny_folders import TEST_NODES, folder_of, tiny_workflow

    _, unpacked = packed
    folder = folder_of(tmp_path / "objects", ["owl.png", "jar.png"])
    workflow = tiny_workflow(tmp_path / "tiny.json")
    from vmdiff_cli.comfy_server import find_comfyui

    # the unpacked folder is not inside a ComfyUI: name this one (an installed pack finds its own)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "COMFYUI_PATH": str(find_comfyui())}
    done = subprocess.run([sys.executable, "-m", "vmdiff_cli.folder_runner", str(folder), "--workflow", str(workflow),
                           "--custom-nodes", str(TEST_NODES), "--small", "--out", str(tmp_path / "fused")],
                          cwd=unpacked, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 of 2 pair(s) done" in done.stdout + done.stderr, done.stdout[-2000:]
    assert len(list((tmp_path / "fused" / "images").rglob("*.png"))) >= 2
