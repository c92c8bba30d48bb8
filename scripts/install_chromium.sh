#!/usr/bin/env bash
# Headless Chromium for tests/frontend/test_frontend.py (ComfyUI's real frontend): Debian's `chromium` package. Idempotent:
# does nothing when a Chromium is already on PATH (or $CHROMIUM is set). Needs root for apt-get (CI runs as root).
set -euo pipefail
# Also CJK fonts: the translated UI (locales/zh, ja, ko, zh-TW) renders as boxes without them.
packages=()
fc-list 2> /dev/null | grep -i "Noto Sans CJK" > /dev/null || packages+=(fonts-noto-cjk)  # no -q: pipefail
found=""
for exe in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$exe" ] && command -v "$exe" > /dev/null 2>&1; then
    echo "[install_chromium] found $(command -v "$exe")"
    found=1
    break
  fi
done
[ -n "$found" ] || packages+=(chromium)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
echo "[install_chromium] installing Debian's ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${packages[@]}" > /dev/null
echo "[install_chromium] $(chromium --version 2>/dev/null | head -1)"
