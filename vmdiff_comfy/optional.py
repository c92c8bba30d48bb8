"""The pack's optional packages: imported only when a node that needs one runs, so a missing or broken install
takes down that node's run, with the fix, and never the pack's registration (ComfyUI imports the pack at start-up).

``OPTIONAL_PACKAGES`` lists every third-party module the pack's runtime code imports beyond ComfyUI's own
requirements (tests/server/test_faults_deps.py walks the pack's imports to keep it complete); each one is a line of
requirements.txt.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from .errors import VMDiffInputError

#: import name → (pip requirement as in requirements.txt, the nodes that need it, what works without it)
OPTIONAL_PACKAGES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "open_clip": ("open-clip-torch>=3.0,<4", ("VMDiff Load OpenCLIP",),
                  "the Scorer can take its CLIP from ComfyUI's own loaders through VMDiff CLIP from Comfy instead"),
}

_PACK_DIR = Path(__file__).resolve().parents[1]


def install_hint(module: str) -> str:
    """How to install ``module``'s package into the Python that runs ComfyUI (the pack's requirements.txt, or the
    one requirement)."""
    requirement = OPTIONAL_PACKAGES[module][0]
    return (f"install it into the Python that runs ComfyUI: pip install -r {_PACK_DIR / 'requirements.txt'} "
            f"(or pip install \"{requirement}\"), then restart ComfyUI")


def require(module: str, node: str) -> ModuleType:
    """Import the optional package ``module`` for the node ``node`` (its display name).

    Returns the module. Raises VMDiffInputError naming the node, the package and the install command when the
    package is missing (ModuleNotFoundError for it) or installed but failing to import (any other error, e.g. a
    version that does not fit the installed torch: reinstall)."""
    requirement, _nodes, fallback = OPTIONAL_PACKAGES[module]
    package = requirement.split(">")[0].split("<")[0].split("=")[0].strip()
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] != module:
            problem = f"is installed but cannot import its own dependency {e.name!r} ({e})"
        else:
            problem = "is not installed"
        raise VMDiffInputError(f"{node} needs the Python package {package} (import {module}), which {problem}: "
                               f"{install_hint(module)}. The other VMDiff nodes work without it; "
                               f"{fallback}.") from None
    except Exception as e:  # noqa: BLE001 - a broken install raises anything at import time
        detail = str(e).splitlines()[0][:300] if str(e) else ""
        raise VMDiffInputError(f"{node} needs the Python package {package} (import {module}), which is installed "
                               f"but fails to import ({type(e).__name__}: {detail}); "
                               f"reinstall it: pip install --force-reinstall \"{requirement}\", then restart "
                               f"ComfyUI. The other VMDiff nodes work without it; {fallback}.") from None


def package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (ComfyUI start-up stays fast); None when it is not
    installed or cannot be located (a finder that raises, a namespace without files): never raises."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None
