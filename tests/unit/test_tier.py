"""The unit tier stands alone: collecting and importing all of it (its conftest, the root conftest, the fixtures
plugin, every test module) imports no ComfyUI."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMFY_MODULES = ("comfy", "comfy_api", "comfy_execution", "folder_paths", "nodes", "server", "execution")

CHILD = f"""
import sys
import pytest
code = pytest.main(["tests/unit", "--collect-only", "-q", "-p", "no:cacheprovider"])
loaded = sorted(m for m in {COMFY_MODULES!r} if m in sys.modules)
print("COMFY_LOADED", loaded)
sys.exit(int(code) or (3 if loaded else 0))
"""


def test_the_unit_tier_imports_no_comfyui(request):
    if all(Path(str(item.path)).resolve().is_relative_to(REPO / "tests" / "unit") for item in request.session.items):
        # the tier runs alone: this very process has collected and run it
        assert [m for m in COMFY_MODULES if m in sys.modules] == []
        return
    # other tiers share this process (they import ComfyUI): collect the unit tier alone in a child
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "COMFY_LOADED []" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "test_ops_math.py" in done.stdout and "test_layout.py" in done.stdout
