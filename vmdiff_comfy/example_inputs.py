"""The pack's example photos (``example_inputs/``, CC0 / public domain, from scikit-image's data: see docs/install.md)
copied into ComfyUI's input folder when the pack loads, so a shipped workflow opened from the template browser runs as
loaded. A file of the same name already there is never overwritten (it may be the user's)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

EXAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "example_inputs"


def install_example_inputs(input_dir: Path | str | None = None) -> list[Path]:
    """Copy each example photo missing from ``input_dir`` (default: ComfyUI's input folder); returns the copies.
    Never raises: a read-only or missing input folder only costs the examples, with a warning in the log."""
    try:
        if input_dir is None:
            import folder_paths

            input_dir = folder_paths.get_input_directory()
        target = Path(input_dir)
        copied, kept = [], []
        for src in sorted(EXAMPLE_INPUTS.glob("*.jpg")):
            dst = target / src.name
            if dst.exists():
                kept.append(src.name)
                continue
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            copied.append(dst)
        if copied:
            logging.info("[VMDiff] example inputs copied into %s: %s", target, ", ".join(p.name for p in copied))
        if kept:
            logging.info("[VMDiff] example inputs already in %s, left as they are (never overwritten): %s",
                         target, ", ".join(kept))
        return copied
    except Exception as exc:  # the examples are a convenience: never stop the pack from loading
        logging.warning("[VMDiff] could not copy the example inputs into ComfyUI's input folder (%s); the shipped "
                        "workflows then need their images uploaded by hand", exc)
        return []
