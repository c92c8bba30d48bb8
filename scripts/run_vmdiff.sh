#!/usr/bin/env bash
# The main job: run the VMDiff workflow on a real ComfyUI. Arguments go to `python -m vmdiff_cli.run_workflow`, e.g.
#   bash scripts/run_vmdiff.sh --tiny
#   bash scripts/run_vmdiff.sh --models-dir ~/ComfyUI/models --image1 a.png --image2 b.png --label1 cat --label2 teapot
#   bash scripts/run_vmdiff.sh --server http://127.0.0.1:8188 --image1 a.png --label1 cat   # your running ComfyUI
# Installed in <ComfyUI>/custom_nodes/<pack>/, it runs that ComfyUI with the Python that has ComfyUI's packages
# ($PYTHON, else <ComfyUI>/venv or .venv) and its models folder; a standalone checkout gets .venv (setup_env.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1
if [ "$(basename "$(dirname "$REPO")")" = custom_nodes ] && [ -f "$REPO/../../main.py" ]; then
  COMFY="$(cd "$REPO/../.." && pwd)"
  for py in "${PYTHON:-}" "$COMFY/venv/bin/python" "$COMFY/.venv/bin/python"; do
    if [ -n "$py" ] && [ -x "$(command -v "$py" || true)" ] && "$py" -c "import torch, aiohttp, requests" 2>/dev/null; then
      echo "[run_vmdiff] ComfyUI's Python: $py (the pack is installed in $COMFY)"
      exec "$py" -m vmdiff_cli.run_workflow "$@"
    fi
  done
  echo "[run_vmdiff] no Python with ComfyUI's packages found (set PYTHON=...); setting up .venv instead"
fi
bash scripts/setup_env.sh
exec .venv/bin/python -m vmdiff_cli.run_workflow "$@"
