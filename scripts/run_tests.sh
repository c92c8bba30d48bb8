#!/usr/bin/env bash
# THE test command: set up (or reuse) .venv, then run the whole suite. Extra arguments go to pytest,
# e.g. `bash scripts/run_tests.sh -m "not slow"` or `bash scripts/run_tests.sh tests/test_server_harness.py`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup_env.sh
bash scripts/install_chromium.sh || echo "[run_tests] no Chromium: tests/test_frontend.py will fail"
# ComfyUI may live in a read-only tree: never write .pyc files into it.
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest tests -q -rA --durations=25 "$@"
