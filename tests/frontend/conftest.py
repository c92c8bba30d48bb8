"""Tier 4, frontend: ComfyUI's real frontend in Chromium (Playwright) against a real server (the session fixtures of
tests/support/fixtures.py). `bash scripts/run_tests.sh frontend` installs Chromium if needed and runs the tier alone."""
