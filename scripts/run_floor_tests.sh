#!/usr/bin/env bash
# The tests that touch the loaders' libraries (transformers, open-clip-torch), run again at their FLOOR versions
# (scripts/setup_floor_env.sh, .ci/constraints-floor.txt). scripts/run_tests.sh runs this after the main run of the
# whole suite; alone: `bash scripts/run_floor_tests.sh [pytest args]`. The tiny scorer stand-ins are written again
# at the floor into .cache/tiny_models_floor (their recipe hashes the library versions); the FLUX stand-ins are the
# main run's (.cache/tiny_models), linked.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
FLOOR_TESTS=(tests/test_score_equivalence.py tests/test_score_nodes.py tests/test_score_clip_comfy.py
             tests/test_server_scored.py tests/test_faults_loader_lists.py)
start=$(date +%s)
SITE="$(bash scripts/setup_floor_env.sh)"
echo "[floor] environment ready in $(( $(date +%s) - start )) s"

MAIN_MODELS="$REPO/.cache/tiny_models"
FLOOR_MODELS="${VMDIFF_FLOOR_MODELS:-$REPO/.cache/tiny_models_floor}"
mkdir -p "$FLOOR_MODELS"
if compgen -G "$MAIN_MODELS/.recipe-*" > /dev/null; then  # the FLUX stand-ins: not version-dependent, shared
  for dir in "$MAIN_MODELS"/*/; do
    name="$(basename "$dir")"
    case "$name" in dinov2|open_clip|bert-base-uncased|grounding-dino|sams) continue ;; esac
    ln -sfn "$MAIN_MODELS/$name" "$FLOOR_MODELS/$name"
  done
  rm -f "$FLOOR_MODELS"/.recipe-*
  cp "$MAIN_MODELS"/.recipe-* "$FLOOR_MODELS/"
fi

export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VMDIFF_TINY_MODELS_DIR="$FLOOR_MODELS"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
t0=$(date +%s)
rc=0
.venv/bin/python -m pytest "${FLOOR_TESTS[@]}" -q -rfE --durations=10 -p no:cacheprovider "$@" || rc=$?
echo "[floor] tests finished in $(( $(date +%s) - t0 )) s (total $(( $(date +%s) - start )) s) with exit code $rc"
exit "$rc"
