"""Greek in log lines and node texts on a console that cannot encode it (PYTHONIOENCODING=cp1252, as a Windows
console): with ComfyUI's own logger set up (app.logger.setup_logger wraps stdout/stderr) and the pack's
make_console_safe, the line is printed with escapes instead of "--- Logging error ---", and ComfyUI's log buffer
(what the UI's terminal shows) keeps the Greek; without it, the same line is lost (so the test can fail)."""
import os
import subprocess
import sys
from pathlib import Path

from vmdiff_cli.comfy_server import find_comfyui

REPO = Path(__file__).resolve().parents[2]
LINE = "VMDiff Mixing Denoise: α = 0.5, γ = 4, σ grid from 512², ε_b ready"
SCRIPT = f"""
import logging, sys
sys.path[:0] = [{str(find_comfyui())!r}, {str(REPO)!r}]
from app.logger import setup_logger, get_logs
setup_logger()
if sys.argv[1] == "safe":
    from vmdiff_comfy.console import make_console_safe
    assert len(make_console_safe()) == 2
logging.error({LINE!r})
print({LINE!r}, flush=True)
print("BUFFER_KEEPS_GREEK", any({LINE!r} in e["m"] for e in get_logs()), file=sys.__stdout__, flush=True)
"""


def run(mode):
    env = {**os.environ, "PYTHONIOENCODING": "cp1252", "PYTHONUTF8": "0"}
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, env=env, timeout=120)


def test_greek_log_lines_print_escaped_on_a_cp1252_console():
    res = run("safe")
    assert res.returncode == 0, res.stderr.decode("cp1252", "replace")
    out, err = res.stdout.decode("cp1252"), res.stderr.decode("cp1252")
    escaped = LINE.encode("cp1252", "backslashreplace").decode("cp1252")
    assert escaped in err and "Logging error" not in err  # the logging line
    assert escaped in out  # a print, e.g. vmdiff_cli/run_workflow.py's node texts
    assert "BUFFER_KEEPS_GREEK True" in out


def test_without_it_the_line_is_lost():
    res = run("plain")
    err = res.stderr.decode("cp1252", "replace")
    assert "Logging error" in err or res.returncode != 0
