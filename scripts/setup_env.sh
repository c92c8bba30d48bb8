#!/usr/bin/env bash
# Idempotent environment for the pack: <repo>/.venv (python3.11), pinned by .ci/constraints.txt, in two modes:
#   bash scripts/setup_env.sh          # the main job (run_vmdiff.sh): torch, ComfyUI's requirements, the pack's
#                                      # requirements and the CLIs' own (pyproject's optional `cli` list)
#   bash scripts/setup_env.sh --test   # the above plus the test-only list (pyproject's optional `test`: Ray,
#                                      # Playwright, groundingdino-py, segment-anything, pytest, …): run_tests.sh
# Callers use <repo>/.venv/bin/python; nothing is exported. Re-running is cheap: the install is skipped while the
# mode's stamp in .venv matches the hash of everything that decides what it installs (a test environment also
# serves the main job).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3.11}"
CONSTRAINTS="$REPO/.ci/constraints.txt"
# torch and torchvision must match; this pair is what this machine's local wheel store has (a CPU torch 2.13.0
# next to PyPI's torchvision fails to import). ComfyUI needs torchvision at import time; torchaudio is optional.
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
# Test-only dependencies: pyproject.toml's optional `test` list (what each is for is said there); never in
# requirements.txt.
MODE=run
case "${1:-}" in
  --test) MODE=test ;;
  "") ;;
  *) echo "[setup_env] ERROR: unknown argument '$1' (none for the main job, --test for the tests)"; exit 2 ;;
esac
optional_deps() {  # pyproject.toml's [project.optional-dependencies] list $1
  "$PYTHON" -c 'import sys, tomllib; print(*tomllib.load(sys.stdin.buffer)["project"]["optional-dependencies"][sys.argv[1]])' \
    "$1" < "$REPO/pyproject.toml"
}
read -r -a CLI_DEPS <<< "$(optional_deps cli)"
read -r -a TEST_DEPS <<< "$(optional_deps test)"
[ "${#TEST_DEPS[@]}" -gt 0 ] && [ "${#CLI_DEPS[@]}" -gt 0 ] || {
  echo "[setup_env] ERROR: no optional 'cli' / 'test' list in pyproject.toml"; exit 1; }
log() { echo "[setup_env] $*"; }

# --- ComfyUI: $COMFYUI_PATH, else the ComfyUI this pack is installed in (<ComfyUI>/custom_nodes/<pack>), else
# ../shared/ComfyUI beside the repo, else a pinned checkout in .cache/ (a standalone checkout only) ---
if [ -n "${COMFYUI_PATH:-}" ]; then
  COMFY="$COMFYUI_PATH"
elif [ "$(basename "$(dirname "$REPO")")" = custom_nodes ] && [ -f "$REPO/../../main.py" ]; then
  COMFY="$(cd "$REPO/../.." && pwd)"
elif [ -f "$REPO/../shared/ComfyUI/main.py" ]; then
  COMFY="$(cd "$REPO/../shared/ComfyUI" && pwd)"
else
  COMFY="$REPO/.cache/ComfyUI"
  if [ ! -f "$COMFY/main.py" ]; then
    # Needs internet; never exercised on the offline dev/CI machines, which always have ../shared/ComfyUI.
    log "fetching ComfyUI v0.8.0 into $COMFY"
    git clone --depth 1 --branch v0.8.0 https://github.com/comfyanonymous/ComfyUI.git "$COMFY"
  fi
fi
[ -f "$COMFY/main.py" ] || { log "ERROR: no ComfyUI at $COMFY"; exit 1; }
log "ComfyUI: $COMFY"

# --- virtualenv ---
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

# ComfyUI's requirements minus torch/torchvision/torchaudio (pinned above / optional).
COMFY_REQS="$VENV/comfyui-requirements.txt"
grep -viE '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;[]|$)' "$COMFY/requirements.txt" > "$COMFY_REQS"

# One stamp per mode; each hash covers everything its install depends on (the test one includes the run inputs).
RUN_HASH="$( { echo "${TORCH_PINS[*]} ${CLI_DEPS[*]}"; cat "$COMFY_REQS" "$REPO/requirements.txt" "$CONSTRAINTS"; } \
             | sha256sum | cut -d' ' -f1)"
TEST_HASH="$( { echo "$RUN_HASH ${TEST_DEPS[*]}"; } | sha256sum | cut -d' ' -f1)"
RUN_STAMP="$VENV/.setup-stamp-run"
TEST_STAMP="$VENV/.setup-stamp-test"
stamp_is() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
if stamp_is "$TEST_STAMP" "$TEST_HASH" || { [ "$MODE" = run ] && stamp_is "$RUN_STAMP" "$RUN_HASH"; }; then
  log "up to date for the $MODE mode ($VENV); skipping install"
  exit 0
fi

PACKAGES=("${TORCH_PINS[@]}" -r "$COMFY_REQS" -r "$REPO/requirements.txt" "${CLI_DEPS[@]}")
[ "$MODE" = test ] && PACKAGES+=("${TEST_DEPS[@]}")
log "installing the $MODE environment into $VENV (constraints: .ci/constraints.txt)"
start=$(date +%s)
"$VENV/bin/python" -m pip install --no-input --progress-bar off -c "$CONSTRAINTS" "${PACKAGES[@]}"
CHECK="import torch, torchvision, aiohttp, requests"
[ "$MODE" = test ] && CHECK="$CHECK, pytest, websocket"
"$VENV/bin/python" -c "$CHECK; print('[setup_env] torch', torch.__version__, 'torchvision', torchvision.__version__)"
echo "$RUN_HASH" > "$RUN_STAMP"
[ "$MODE" = test ] && echo "$TEST_HASH" > "$TEST_STAMP"
log "installed the $MODE environment in $(( $(date +%s) - start )) s"
