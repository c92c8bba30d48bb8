"""Find ComfyUI and bring it up in-process, the way ComfyUI itself would load this pack.

ComfyUI is located as ``vmdiff_cli.comfy_server.find_comfyui`` says. Nothing here mocks ComfyUI: the real ``comfy``
package is imported from that tree, which is only read: its input, output, temp and user folders are pointed at a
private folder before any node is imported (ComfyUI's node import creates ``input/3d``; the pack copies its example
photos into the input folder).
"""
from __future__ import annotations

import asyncio
import importlib.util
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_MODULE_NAME = "vmdiff_pack"


def comfy_path() -> Path:
    """$COMFYUI_PATH, else ../shared/ComfyUI, else .cache/ComfyUI (one rule, vmdiff_cli/comfy_server.find_comfyui)."""
    from vmdiff_cli.comfy_server import find_comfyui

    return find_comfyui()


_booted = False


def boot_comfy_inprocess(base_dir: Path | str | None = None, cpu: bool = True) -> None:
    """Import ComfyUI's packages on the CPU (``cpu=False``: on ComfyUI's default device, e.g. CUDA, for
    benchmarks/bench_gpu.py) and register its built-in extra nodes (idempotent).

    ComfyUI's input, output, temp and user folders go under ``base_dir`` (default: ``$VMDIFF_COMFY_BASE_DIR``, else
    a temporary folder removed at exit), set before any node module is imported, so nothing is written into the
    ComfyUI tree."""
    global _booted
    if _booted:
        return
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.dont_write_bytecode = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    root = str(comfy_path())
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args  # noqa: E402  (must precede comfy.model_management)

    args.cpu = cpu
    # As ComfyUI's main.py does: import its top-level ``utils`` package before nodes.py puts ComfyUI/comfy first on
    # sys.path (where comfy/utils.py would shadow it and comfy_extras/nodes_images.py would fail to import).
    import utils.extra_config  # noqa: F401
    import utils.install_util  # noqa: F401

    writable_folders(base_dir)
    import nodes  # ComfyUI's nodes.py

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    _booted = True


def writable_folders(base_dir: Path | str | None = None) -> Path:
    """Point ComfyUI's input, output, temp and user folders (folder_paths) at ``<base>/<kind>`` and return the base."""
    import folder_paths

    if base_dir is None and os.environ.get("VMDIFF_COMFY_BASE_DIR"):
        base_dir = os.environ["VMDIFF_COMFY_BASE_DIR"]
    if base_dir is None:
        base_dir = tempfile.mkdtemp(prefix="vmdiff-inprocess-")
        atexit.register(shutil.rmtree, base_dir, ignore_errors=True)
    base = Path(base_dir)
    for kind, setter in (("input", folder_paths.set_input_directory), ("output", folder_paths.set_output_directory),
                         ("temp", folder_paths.set_temp_directory), ("user", folder_paths.set_user_directory)):
        (base / kind).mkdir(parents=True, exist_ok=True)
        setter(str(base / kind))
    return base


def load_pack():
    """Import this repository as a package named ``vmdiff_pack`` (ComfyUI imports custom node folders the same way)."""
    if PACK_MODULE_NAME in sys.modules:
        return sys.modules[PACK_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_MODULE_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module
