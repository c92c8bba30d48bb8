#!/usr/bin/env bash
# The main job: run the VMDiff workflow on a real ComfyUI. Arguments go to `python -m vmdiff_cli.run_workflow`, e.g.
#   bash scripts/run_vmdiff.sh --tiny
#   bash scripts/run_vmdiff.sh --models-dir ~/ComfyUI/models --image1 a.png --image2 b.png --label1 cat --label2 teapot
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup_env.sh
export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m vmdiff_cli.run_workflow "$@"
