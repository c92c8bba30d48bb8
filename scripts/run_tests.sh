#!/usr/bin/env bash
# THE test command: set up (or reuse) .venv, then run the whole suite, or one tier of it:
#   bash scripts/run_tests.sh                   # every tier (what CI runs)
#   bash scripts/run_tests.sh unit             # tests/unit: pure maths and layout, no ComfyUI (seconds)
#   bash scripts/run_tests.sh nodes|server|frontend [pytest args]
# Other extra arguments go to pytest, e.g. `bash scripts/run_tests.sh -m "not slow"` or
# `bash scripts/run_tests.sh tests/server/test_server_harness.py`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
TARGET=(tests)
case "${1:-}" in
  unit|nodes|server|frontend) TARGET=("tests/$1"); shift ;;
  tests|tests/*) TARGET=() ;;  # paths given: pytest runs those only
esac
bash scripts/setup_env.sh --test
if [ "${TARGET[*]:-}" != tests/unit ] && [ "${TARGET[*]:-}" != tests/nodes ] && [ "${TARGET[*]:-}" != tests/server ]; then
  bash scripts/install_chromium.sh || echo "[run_tests] no Chromium: tests/frontend will fail"
fi
# ComfyUI may live in a read-only tree: never write .pyc files into it.
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
rc=0
RESULTS="$REPO/.cache/test-results/main.xml"
mkdir -p "$(dirname "$RESULTS")" && rm -f "$RESULTS"
.venv/bin/python -m pytest ${TARGET[@]+"${TARGET[@]}"} -q -rA --durations=25 --junitxml="$RESULTS" "$@" || rc=$?
# The whole suite (no arguments: what CI runs) is followed by the library-touching tests at the oldest supported
# transformers / open-clip-torch (docs/versions.md); VMDIFF_FLOOR=1 / 0 forces it on / off.
if [ "${VMDIFF_FLOOR:-$([ $# -eq 0 ] && [ "${TARGET[*]:-}" = tests ] && echo 1 || echo 0)}" = 1 ]; then
  bash scripts/run_floor_tests.sh || rc=$(( rc ? rc : 1 ))
fi
# The failures of the main run again, last: a log's tail (all CI shows) must name them.
.venv/bin/python -m scripts.test_recap "$RESULTS"
exit "$rc"
