#!/usr/bin/env bash
# Headless Chromium for tests/frontend/test_frontend.py (ComfyUI's real frontend): Debian's `chromium` package. Idempotent:
# does nothing when a Chromium is already on PATH (or $CHROMIUM is set). Needs root for apt-get (CI runs as root).
set -euo pipefail
for exe in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$exe" ] && command -v "$exe" > /dev/null 2>&1; then
    echo "[install_chromium] found $(command -v "$exe")"
    exit 0
  fi
done
echo "[install_chromium] installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium > /dev/null
echo "[install_chromium] $(chromium --version 2>/dev/null | head -1)"
