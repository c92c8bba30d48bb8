"""One missing optional package must not take down every node. Every third-party module the
pack's runtime code imports beyond ComfyUI's own requirements is listed in vmdiff_comfy/optional.py (checked by
walking the pack's imports) and imported only inside the node that needs it. With each one hidden, in each way a
package goes missing (a finder that raises, as a half-removed install or an import hook does; plain absence; an
install that fails at import time), ComfyUI registers all VMDiff nodes, the needing node's run names the package and
the install command, and the other nodes run."""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vmdiff_cli.comfy_env import REPO_ROOT
from vmdiff_cli.comfy_server import ComfyServer, ExecutionError
from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES as NAMES

PACK_CODE = [REPO_ROOT / "__init__.py", *sorted((REPO_ROOT / "nodes").rglob("*.py")),
             *sorted((REPO_ROOT / "vmdiff_comfy").rglob("*.py")), *sorted((REPO_ROOT / "vmdiff_ops").rglob("*.py"))]
#: ComfyUI's own top-level modules the pack may import (its tree, not packages of its requirements)
COMFY_MODULES = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "nodes", "server",
                 "node_helpers", "latent_preview", "app", "utils", "comfy_config"}

#: How a package goes missing. "raises": a finder refuses it (what the issue's report saw: every node was lost);
#: "absent": import finds nothing, as in a fresh Python; "broken": it is found but its import fails (a version that
#: does not fit the installed torch).
SITECUSTOMIZE = textwrap.dedent("""
    import importlib.abc, importlib.machinery, os, sys
    HIDDEN = set(os.environ["VMDIFF_TEST_HIDE"].split(","))
    MODE = os.environ["VMDIFF_TEST_HIDE_MODE"]

    class Broken(importlib.abc.Loader):
        def create_module(self, spec):
            return None
        def exec_module(self, module):
            raise AttributeError("module 'torch' has no attribute 'compiler_disable' (stand-in for a broken install)")

    class Raise(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                if MODE == "broken":
                    return importlib.machinery.ModuleSpec(name, Broken())
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    class Absent:
        def __init__(self, inner):
            self.inner = inner
        def find_spec(self, name, path=None, target=None):
            return None if name.split(".")[0] in HIDDEN else self.inner.find_spec(name, path, target)
        def __getattr__(self, attr):
            return getattr(self.inner, attr)

    if MODE == "absent":
        sys.meta_path[:] = [Absent(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
    else:
        sys.meta_path.insert(0, Raise())
""")


def optional_packages() -> dict:
    """vmdiff_comfy/optional.py's table, read without importing the pack (it is a relative-import package)."""
    tree = ast.parse((REPO_ROOT / "vmdiff_comfy" / "optional.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "OPTIONAL_PACKAGES":
            return ast.literal_eval(node.value)
    raise AssertionError("OPTIONAL_PACKAGES not found in vmdiff_comfy/optional.py")


def hiding_env(tmp_path: Path, modules: list[str], mode: str) -> dict:
    shim = tmp_path / f"hide-{mode}"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join([str(shim), *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, PYTHONPATH=path, VMDIFF_TEST_HIDE=",".join(modules), VMDIFF_TEST_HIDE_MODE=mode)


def comfy_requirement_modules() -> set[str]:
    """Top-level modules of ComfyUI's requirements (and what they pull), as installed here."""
    from vmdiff_cli.comfy_env import comfy_path

    reqs = (comfy_path() / "requirements.txt").read_text().splitlines()
    names = {re.split(r"[<>=!~;\[ ]", r.strip())[0].lower().replace("_", "-") for r in reqs if r.strip()
             and not r.startswith("#")}
    pending, seen = set(names), set()
    while pending:  # their dependencies too: ComfyUI's environment always holds them
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for r in requires:
            if "extra ==" not in r:
                pending.add(re.split(r"[<>=!~;\[ (]", r.strip())[0].lower().replace("_", "-"))
    modules = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        if any(d.lower().replace("_", "-") in seen for d in dists):
            modules.add(module)
    return modules


def pack_imports() -> dict[str, list[tuple[str, int, bool]]]:
    """Every absolute top-level module the pack's runtime code imports (import statements, and the string given to
    ``require(...)`` / ``importlib.import_module(...)``) → [(file, line, at module level)]."""
    found: dict[str, list] = {}
    for path in PACK_CODE:
        tree = ast.parse(path.read_text(), str(path))
        in_function = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(fn) if n is not fn}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                    "require", "import_module") and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                mods = [node.args[0].value]
            else:
                continue
            for mod in mods:
                found.setdefault(mod.split(".")[0], []).append(
                    (str(path.relative_to(REPO_ROOT)), node.lineno, id(node) not in in_function))
    return found


def test_every_optional_package_is_listed_required_and_imported_lazily():
    imports = pack_imports()
    third_party = set(imports) - set(sys.stdlib_module_names) - COMFY_MODULES - {"__future__"}
    optional = third_party - comfy_requirement_modules()
    table = optional_packages()
    assert optional == set(table), f"optional imports {sorted(optional)} vs vmdiff_comfy/optional.py {sorted(table)}"
    requirements = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    for module, (requirement, nodes, fallback) in table.items():
        assert requirement in requirements, (module, requirement)
        eager = [where for where in imports[module] if where[2]]
        assert not eager, f"{module} imported at module level (ComfyUI start-up would need it): {eager}"
        assert nodes and fallback


def combo(info: dict, node: str, name: str) -> list:
    """A combo input's options in /object_info (V3 nodes: ["COMBO", {"options": [...]}], V1: [[...], {...}])."""
    spec = {**info[node]["input"].get("required", {}), **info[node]["input"].get("optional", {})}[name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


PROBE = textwrap.dedent("""
    import asyncio, json, sys
    sys.path.insert(0, REPO_PATH)
    from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack
    boot_comfy_inprocess()
    pack = load_pack()
    extension = asyncio.run(pack.comfy_entrypoint())
    ids = sorted(node.define_schema().node_id for node in asyncio.run(extension.get_node_list()))
    from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError
    from vmdiff_pack.vmdiff_comfy.optional import OPTIONAL_PACKAGES, require
    errors = {}
    for module, (_, nodes, _) in OPTIONAL_PACKAGES.items():
        try:
            require(module, nodes[0])
            errors[module] = None
        except VMDiffInputError as e:
            errors[module] = str(e)
    print("PROBE" + json.dumps({"ids": ids, "errors": errors}))
""")


def probe(env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE.replace("REPO_PATH", repr(str(REPO_ROOT)))], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("PROBE")]
    return json.loads(line[len("PROBE"):])


@pytest.fixture(scope="module")
def all_node_ids() -> list[str]:
    seen = probe(dict(os.environ))
    assert len(seen["ids"]) >= 17 and all(v is None for v in seen["errors"].values()), seen
    return seen["ids"]


@pytest.mark.parametrize("mode", ["absent", "raises", "broken"])
@pytest.mark.parametrize("module", sorted(optional_packages()))
def test_each_optional_package_missing_keeps_every_node(tmp_path, all_node_ids, module, mode):
    seen = probe(hiding_env(tmp_path, [module], mode))
    assert seen["ids"] == all_node_ids
    requirement, nodes, _ = optional_packages()[module]
    message = seen["errors"][module]
    package = re.split(r"[<>=]", requirement)[0]
    assert message and nodes[0] in message and package in message, message
    if mode == "broken":
        assert "fails to import" in message and "--force-reinstall" in message and "compiler_disable" in message
    else:
        assert "is not installed" in message and "requirements.txt" in message
    assert "other VMDiff nodes work" in message


@pytest.mark.slow
def test_server_without_open_clip_registers_all_nodes_and_names_the_package(tmp_path, monkeypatch, all_node_ids):
    """The issue's case through a real server: open_clip refused by an import finder at start-up."""
    from vmdiff_cli.tiny_scorers import default_models_dir, ensure_tiny_scorers

    ensure_tiny_scorers(default_models_dir())
    for key, value in hiding_env(tmp_path, ["open_clip"], "raises").items():
        monkeypatch.setenv(key, value)
    with ComfyServer(default_models_dir()) as server:
        monkeypatch.undo()
        info = server.http.get(server.url + "/object_info", timeout=120).json()
        assert sorted(k for k in info if k.startswith("VMDiff")) == all_node_ids
        assert "Error while calling comfy_entrypoint" not in server.log_text()
        assert NAMES["open_clip"] in combo(info, "VMDiffLoadOpenCLIP", "checkpoint")

        load = {"clip": {"class_type": "VMDiffLoadOpenCLIP",
                         "inputs": {"model_name": NAMES["open_clip_model"], "checkpoint": NAMES["open_clip"]}},
                "show": {"class_type": "PreviewAny", "inputs": {"source": ["clip", 0]}}}
        with pytest.raises(ExecutionError) as failed:
            server.run(load, timeout=600)
        text = str(failed.value)
        assert "VMDiff Load OpenCLIP needs the Python package open-clip-torch" in text, text
        assert "pip install -r" in text and "requirements.txt" in text and "VMDiff CLIP from Comfy" in text

        # every other node runs: the three other scorer loaders, then the OpenCLIP one again (same answer)
        others = {"dino": ("VMDiffLoadDINOv2", {"dinov2": NAMES["dinov2"]}),
                  "gdino": ("VMDiffLoadGroundingDINO", {"checkpoint": NAMES["grounding_dino_hf"],
                                                       "config": combo(info, "VMDiffLoadGroundingDINO", "config")[0]}),
                  "sam": ("VMDiffLoadSAM", {"checkpoint": NAMES["sam_hf"]})}
        prompt = {k: {"class_type": c, "inputs": i} for k, (c, i) in others.items()}
        prompt.update({f"show_{k}": {"class_type": "PreviewAny", "inputs": {"source": [k, 0]}} for k in others})
        entry = server.run(prompt, timeout=600)
        assert entry["status"]["status_str"] == "success"
        with pytest.raises(ExecutionError, match="open-clip-torch"):
            server.run(load, timeout=600)


@pytest.mark.parametrize("cli", ["vmdiff_cli/run_workflow.py", "vmdiff_cli/folder_runner.py"])
def test_clis_without_requests_say_what_to_install(tmp_path, cli):
    """The user CLIs need requests, which ComfyUI's own requirements no longer pull in (transformers 5 dropped it):
    without it they stop with one line naming the package and the pip command, not a traceback."""
    done = subprocess.run([sys.executable, cli, "--help"], cwd=REPO_ROOT, env=hiding_env(tmp_path, ["requests"],
                                                                                           "absent"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "needs the Python package requests" in done.stderr and 'pip install "requests>=2.31,<3"' in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    shown = subprocess.run([sys.executable, cli, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "usage:" in shown.stdout
