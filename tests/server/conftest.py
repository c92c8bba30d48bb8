"""Tier 3, server: the pack through real ComfyUI servers (child processes started by the session fixtures of
tests/support/fixtures.py, once per distinct arguments, stopped at the end), the CLIs of vmdiff_cli/ and the Registry
pack. `bash scripts/run_tests.sh server` runs the tier alone."""
