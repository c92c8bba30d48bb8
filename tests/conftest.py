"""The root of the test tiers (docs/testing.md): tests/unit (pure maths, no ComfyUI), tests/nodes (ComfyUI
in-process, booted once in its conftest.py), tests/server (real servers), tests/frontend (Chromium). This file
imports no ComfyUI: it binds the names the tests import by, keeps every run hermetic (tests/support/hermetic.py)
and loads the session fixtures (tests/support/fixtures.py)."""
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # the one sys.path entry of the tests: `import vmdiff_cli…`, `import tests.support…`
    sys.path.insert(0, str(REPO_ROOT))

# The repo root has an __init__.py (it is a custom node pack), so pytest imports this file as `<folder>.tests.conftest`
# and never binds the top-level name `tests`. Bind it to this folder now: once ComfyUI's root joins sys.path, ComfyUI's
# own `tests` package would otherwise answer `import tests.support…`.
import tests  # noqa: E402

assert Path(tests.__file__).resolve().parent == REPO_ROOT / "tests", tests.__file__

import pytest  # noqa: E402

from vmdiff_cli.comfy_env import load_pack  # noqa: E402

# The pack as ComfyUI imports it, `vmdiff_pack`: the one name the tests import it (and vmdiff_ops) by. Its
# __init__.py is import-light (no ComfyUI), so the unit tier imports `vmdiff_pack.vmdiff_ops` without ComfyUI.
load_pack()

pytest_plugins = ["tests.support.fixtures"]

TIERS = ("unit", "nodes", "server", "frontend")


def pytest_collection_modifyitems(config, items):
    """Each test carries its tier's marker (`-m unit`, `-m "not frontend"`, …), taken from its folder."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(REPO_ROOT / "tests").parts
        if parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


def pytest_collectstart(collector):
    """A test module placed directly in tests/ (not yet in a tier folder) gets ComfyUI in-process first, as every
    module had before the tiers, so it imports as it did."""
    if isinstance(collector, pytest.Module) and Path(str(collector.path)).resolve().parent == REPO_ROOT / "tests":
        from vmdiff_cli.comfy_env import boot_comfy_inprocess

        boot_comfy_inprocess()


@pytest.fixture(autouse=True)
def _inference_mode():
    """Nodes run under torch.inference_mode in ComfyUI's executor; run them the same way here."""
    import torch

    with torch.inference_mode():
        yield


