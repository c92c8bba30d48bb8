"""Console safety: the pack's log lines and node texts use Greek (σ, ε_b, α, β, γ). A console that cannot encode
them (a Windows cp1252 console, PYTHONIOENCODING=cp1252) makes Python's logging print "--- Logging error ---" and
drop the line, and a plain print() raise. The UI keeps the Greek (ComfyUI's log buffer and the websocket are UTF-8);
only the console stream writes what it cannot encode as escapes (σ → \\u03c3)."""
from __future__ import annotations

import sys

GREEK_SAMPLE = "σεαβγ"


def make_console_safe(streams=None) -> list:
    """Switch each stream (default: sys.stdout, sys.stderr, e.g. ComfyUI's LogInterceptor wrappers) that cannot
    encode Greek to ``errors="backslashreplace"``; returns the streams changed. Streams that can are left alone."""
    changed = []
    for stream in streams if streams is not None else (sys.stdout, sys.stderr):
        try:
            GREEK_SAMPLE.encode(getattr(stream, "encoding", None) or "utf-8")
        except UnicodeEncodeError:
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")
                changed.append(stream)
        except LookupError:  # an encoding Python does not know: not ours to fix
            pass
    return changed
