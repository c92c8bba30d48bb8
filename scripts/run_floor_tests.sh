#!/usr/bin/env bash
# The tests that touch the loaders' libraries (transformers, open-clip-torch), run again at their FLOOR versions
# (scripts/setup_floor_env.sh, .ci/constraints-floor.txt). scripts/run_tests.sh runs this after the main run of the
# whole suite; alone: `bash scripts/run_floor_tests.sh [pytest args]`. The tiny scorer stand-ins are written again
# at the floor into .cache/tiny_models_floor (their recipe hashes the library versions); the FLUX stand-ins are the
# main run's (.cache/tiny_models), linked file by file.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
FLOOR_TESTS=(tests/nodes/test_score_equivalence.py tests/nodes/test_score_nodes.py tests/nodes/test_score_clip_comfy.py
             tests/server/test_server_scored.py tests/server/test_faults_loader_lists.py)
start=$(date +%s)
SITE="$(bash scripts/setup_floor_env.sh)"
echo "[floor] environment ready in $(( $(date +%s) - start )) s"

MAIN_MODELS="$REPO/.cache/tiny_models"
FLOOR_MODELS="${VMDIFF_FLOOR_MODELS:-$REPO/.cache/tiny_models_floor}"
mkdir -p "$FLOOR_MODELS"
# The FLUX stand-ins are not version-dependent: the files the main run's recipe marker lists are linked one by one
# (never a folder: a floor run writing another file there must not write into the main cache).
.venv/bin/python - "$MAIN_MODELS" "$FLOOR_MODELS" <<'PY'
import json, os, sys
from pathlib import Path
main, floor = map(Path, sys.argv[1:])
for marker in main.glob(".recipe-*"):
    for entry in json.loads(marker.read_text()).values():
        target, link = main / entry["file"], floor / entry["file"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    for old in floor.glob(".recipe-*"):
        old.unlink()
    (floor / marker.name).write_text(marker.read_text())
PY

export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VMDIFF_TINY_MODELS_DIR="$FLOOR_MODELS"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
t0=$(date +%s)
rc=0
.venv/bin/python -m pytest "${FLOOR_TESTS[@]}" -q -rfE --durations=10 -p no:cacheprovider "$@" || rc=$?
echo "[floor] tests finished in $(( $(date +%s) - t0 )) s (total $(( $(date +%s) - start )) s) with exit code $rc"
exit "$rc"
