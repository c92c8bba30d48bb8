#!/usr/bin/env bash
# Idempotent environment for developing and testing the pack: <repo>/.venv (python3.11) with torch, ComfyUI's
# requirements, the pack's requirements and the test tools, all pinned by .ci/constraints.txt.
# Callers use <repo>/.venv/bin/python; nothing is exported. Re-running is cheap: the install is skipped while the
# stamp in .venv matches the hash of everything that decides what gets installed.
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
READ_TEST_DEPS='import sys, tomllib; print(*tomllib.load(sys.stdin.buffer)["project"]["optional-dependencies"]["test"])'
read -r -a TEST_DEPS <<< "$("$PYTHON" -c "$READ_TEST_DEPS" < "$REPO/pyproject.toml")"
[ "${#TEST_DEPS[@]}" -gt 0 ] || { echo "[setup_env] ERROR: no optional 'test' list in pyproject.toml"; exit 1; }
log() { echo "[setup_env] $*"; }

# --- ComfyUI: $COMFYUI_PATH, else ../shared/ComfyUI beside the repo, else a pinned checkout in .cache/ ---
if [ -n "${COMFYUI_PATH:-}" ]; then
  COMFY="$COMFYUI_PATH"
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

STAMP="$VENV/.setup-stamp"
HASH="$( { echo "${TORCH_PINS[*]} ${TEST_DEPS[*]}"; cat "$COMFY_REQS" "$REPO/requirements.txt" "$CONSTRAINTS"; } \
         | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  log "up to date ($VENV, stamp ${HASH:0:12}); skipping install"
  exit 0
fi

log "installing into $VENV (constraints: .ci/constraints.txt)"
start=$(date +%s)
"$VENV/bin/python" -m pip install --no-input --progress-bar off -c "$CONSTRAINTS" \
  "${TORCH_PINS[@]}" -r "$COMFY_REQS" -r "$REPO/requirements.txt" "${TEST_DEPS[@]}"
"$VENV/bin/python" -c "import torch, torchvision, aiohttp, requests, pytest, websocket; \
print('[setup_env] torch', torch.__version__, 'torchvision', torchvision.__version__)"
echo "$HASH" > "$STAMP"
log "installed in $(( $(date +%s) - start )) s"
