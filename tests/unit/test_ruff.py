"""`ruff check` passes on the whole repository (rules and line length in pyproject.toml's [tool.ruff]). It runs
from the README's test command like every other test, so CI runs it."""
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ruff() -> list[str]:
    beside = Path(sys.executable).with_name("ruff")  # installed into the test environment (pyproject's test list)
    found = str(beside) if beside.exists() else shutil.which("ruff")
    assert found, "ruff is not installed: it is in pyproject.toml's optional `test` dependencies"
    return [found]


def test_ruff_check_passes():
    result = subprocess.run([*ruff(), "check", "--no-cache", "--output-format", "concise", str(REPO)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_configured_and_sees_a_finding(tmp_path):
    """The check is real: the configured rules flag an unused import and a line over the project's length."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = '" + "y" * 130 + "'\n")
    result = subprocess.run([*ruff(), "check", "--no-cache", "--config", str(REPO / "pyproject.toml"),
                             "--output-format", "concise", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "F401" in result.stdout and "E501" in result.stdout, result.stdout
