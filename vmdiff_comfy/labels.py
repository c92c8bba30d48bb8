"""The object labels T1, T2: one normaliser and validator for every place a label enters the pack (VMDiff Fusion
Prompt, VMDiff Scorer, the folder runner's file-name labels), one single-pass template substitution, and one message
for a label longer than the CLIP window that reads it.

No ComfyUI import: the folder runner uses it before any server starts.
"""
from __future__ import annotations

import re
import unicodedata

from .errors import VMDiffInputError

#: Unicode categories that show nothing: format characters (zero-width space U+200B, BOM U+FEFF, RTL / LTR marks,
#: ZWJ), controls (tab, newline), separators (NBSP and other spaces, line / paragraph separators), unassigned.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
#: Categories that become one plain space inside a label (ComfyUI's and OpenCLIP's tokenizers split on them anyway).
SPACING_CATEGORIES = frozenset({"Cc", "Zs", "Zl", "Zp"})

PLACEHOLDER = re.compile(r"\{T([12])\}")


def is_invisible(char: str) -> bool:
    return unicodedata.category(char) in INVISIBLE_CATEGORIES


def visible_label(label: str) -> str:
    """``label`` with invisible characters (Unicode Cf, Cc, Zs, Zl, Zp, unassigned; e.g. U+200B, U+FEFF, NBSP, RTL
    marks, tabs, newlines) stripped from both ends and every run of spacing characters inside (tab, newline, NBSP,
    …) made one plain space; format characters inside (e.g. the ZWJ of an emoji sequence) are kept. "" if nothing
    visible is left. A plain label ("owl", " owl ") comes back as ``label.strip()``."""
    start, end = 0, len(label)
    while start < end and is_invisible(label[start]):
        start += 1
    while end > start and is_invisible(label[end - 1]):
        end -= 1
    core = label[start:end]
    if any(unicodedata.category(c) in SPACING_CATEGORIES and c != " " for c in core):
        core = re.sub(r"\s+", " ", "".join(" " if unicodedata.category(c) in SPACING_CATEGORIES else c
                                           for c in core))
    return core


def clean_label(name: str, label) -> str:
    """The label ``label`` of input ``name`` as the pack uses it (``visible_label``).

    Raises VMDiffInputError naming ``name`` if the label is not text or shows nothing (empty, or only invisible
    characters: the code points it held are listed)."""
    if not isinstance(label, str):
        raise VMDiffInputError(f"{name}: expected the object's name as text, got {type(label).__name__}")
    core = visible_label(label)
    if not core:
        held = ", ".join(dict.fromkeys(f"U+{ord(c):04X} ({unicodedata.name(c, unicodedata.category(c))})"
                                       for c in label[:8]))
        raise VMDiffInputError(f"{name}: the object label is empty" + (f" (it holds only invisible characters: "
                                                                       f"{held})" if label else "")
                               + "; name the object in visible words (e.g. 'owl')")
    return core


def fill_template(template: str, labels: dict[str, str]) -> str:
    """The template with {T1} and {T2} replaced by ``labels["label_1"]`` / ``["label_2"]`` in ONE pass: text
    inside a label ("{T2}", "{}", "%s") is kept as written, never expanded again. Raises if a placeholder is
    missing."""
    if "{T1}" not in template or "{T2}" not in template:
        raise VMDiffInputError("template: must contain both {T1} and {T2}")
    return PLACEHOLDER.sub(lambda m: labels[f"label_{m.group(1)}"], template)


def label_too_long(name: str, over: int, total: int, window: int, reader: str, detail: str = "") -> str:
    """The one message for a label a CLIP would cut: which input, by how many tokens, who reads it."""
    return (f"{name}: too long by {over} CLIP tokens — {reader} is {total} tokens{detail}, but {window} is all the "
            f"CLIP window reads (the rest would be lost silently); shorten {name} by at least {over} tokens (e.g. "
            f"name the object in a few words: 'owl'; a character of Chinese or Japanese, or an emoji, often takes "
            f"2-3 tokens)")
