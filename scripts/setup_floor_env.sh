#!/usr/bin/env bash
# The FLOOR environment: the main .venv with the OLDEST supported versions of the libraries the pack's loaders call
# (.ci/constraints-floor.txt: transformers 4.50.3 = ComfyUI 0.8.0's floor, open-clip-torch 3.0.0 = the pack's floor,
# and the tokenizers / huggingface-hub those accept) installed into <repo>/.venv-floor/site, which shadows .venv's
# own copies when put first on PYTHONPATH (everything else, torch included, is shared: a from-scratch venv of the
# same pins took 7m54s to install, this takes seconds). scripts/run_tests.sh runs the library-touching tests in it
# after the main run. Prints the PYTHONPATH to use. Idempotent: skipped while the stamp matches.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
SITE="${VMDIFF_FLOOR_SITE:-$REPO/.venv-floor/site}"
CONSTRAINTS="$REPO/.ci/constraints-floor.txt"
log() { echo "[setup_floor_env] $*" >&2; }
[ -x "$PY" ] || { log "ERROR: no $PY (run scripts/setup_env.sh first)"; exit 1; }

STAMP="$SITE/.setup-stamp"
HASH="$(cat "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  log "up to date ($SITE, stamp ${HASH:0:12}); skipping install"
else
  start=$(date +%s)
  rm -rf "$SITE"
  mkdir -p "$SITE"
  mapfile -t PINS < <(grep -vE '^[[:space:]]*(#|$)' "$CONSTRAINTS")
  log "installing ${PINS[*]} into $SITE"
  # --no-deps: every other dependency is .venv's; transformers checks its own dependency ranges when imported (below)
  "$PY" -m pip install --no-input --progress-bar off --quiet --no-deps --only-binary :all: --target "$SITE" "${PINS[@]}"
  echo "$HASH" > "$STAMP"
  log "installed in $(( $(date +%s) - start )) s"
fi
# the floor versions are the ones imported, and transformers accepts its tokenizers / huggingface-hub
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$CONSTRAINTS" <<'PY' >&2
import importlib.metadata as md, re, sys
import transformers  # noqa: F401  (raises here on a tokenizers / huggingface-hub it does not accept)
pins = [l.split("#")[0].strip() for l in open(sys.argv[1]) if l.split("#")[0].strip()]
for pin in pins:
    name, version = re.split(r"==", pin)
    got = md.version(name)
    assert got == version, f"{name}: {got} imported, {version} pinned (is {sys.argv[1]} shadowed?)"
print("[setup_floor_env] floor:", ", ".join(pins))
PY
echo "$SITE"
