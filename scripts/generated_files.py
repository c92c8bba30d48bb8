"""One home for the builders' "write, or only check" step (scripts/build_blueprints.py, scripts/build_locales.py):
files generated from a one-place description are either written or compared with what is on disk."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_or_check(files: dict[Path, str], check: bool, command: str) -> int:
    """Write each ``{path: text}`` (UTF-8, parents created), or with ``check`` only compare it with the file on disk.
    Prints each written path, or the stale ones with the ``command`` that regenerates them. Returns 1 when ``check``
    found a stale or missing file, else 0."""
    stale = []
    for path, text in files.items():
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(REPO_ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print("wrote", path.relative_to(REPO_ROOT))
    if stale:
        print(f"stale (run {command}):", *stale, sep="\n  ")
    return 1 if stale else 0
