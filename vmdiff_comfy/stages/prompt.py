"""The fusion prompt P of the two labels (paper: "A photo of <T1> creatively fused with <T2>.") and the check that it
fits the one CLIP-L window VMDiff reads (its pooled vector), counted with the model's own tokenizer."""
from __future__ import annotations

from ..errors import VMDiffInputError
from ..labels import clean_label, fill_template

DEFAULT_TEMPLATE = "A photo of {T1} creatively fused with {T2}."


def fusion_prompt(label_1: str, label_2: str, template: str = DEFAULT_TEMPLATE) -> str:
    """P = "A photo of <T1> creatively fused with <T2>." (the paper's prompt): each label cleaned and checked by
    ``labels.clean_label`` (raises if it shows nothing), the template filled once (a "{T2}" inside a label stays
    as written)."""
    labels = {name: clean_label(name, label) for name, label in (("label_1", label_1), ("label_2", label_2))}
    return fill_template(template, labels)


CLIP_L_WINDOW = 75  # the content tokens of CLIP-L's first window (77 minus its start and end tokens)


def clip_l_token_count(clip, text: str) -> int:
    """How many CLIP-L tokens ``clip``'s own tokenizer makes of ``text``, whatever the script (Chinese characters
    and emoji take several each); start, end and padding tokens are not counted."""
    windows = clip.tokenize(text, return_word_ids=True).get("l", [])
    return sum(1 for window in windows for token in window if token[2] > 0)


def check_one_clip_window(clip, tokens: dict, labels: dict, template: str) -> None:
    """VMDiff uses only CLIP-L's pooled vector, which sees the first 77-token window: a longer prompt (ComfyUI
    splits it into windows) would silently lose its end, e.g. the second label. Names the input that overflows
    (each label longer than its half of the room the template leaves, else the template) and by how many tokens,
    counted with the tokenizer."""
    windows = len(tokens.get("l", ()))
    if windows <= 1:
        return
    labels = {name: clean_label(name, label) for name, label in labels.items()}
    counts = {name: clip_l_token_count(clip, label) for name, label in labels.items()}
    counts["template"] = clip_l_token_count(clip, fill_template(template, {"label_1": " ", "label_2": " "}))
    total = clip_l_token_count(clip, fill_template(template, labels))
    over = total - CLIP_L_WINDOW
    share = (CLIP_L_WINDOW - counts["template"]) / 2  # each label's fair part of the window
    culprits = [name for name in ("label_1", "label_2") if counts[name] > share]
    if counts["template"] >= CLIP_L_WINDOW - 2 or not culprits:  # no room left for two labels of one token each
        culprits = ["template"]
    measured = ", ".join(f"{name} {count}" for name, count in counts.items())
    raise VMDiffInputError(
        f"{' and '.join(culprits)}: too long by {over} CLIP tokens — the fusion prompt is {total} tokens "
        f"({measured}, counted with the tokenizer), but VMDiff uses CLIP-L's pooled vector, which reads only the "
        f"first {CLIP_L_WINDOW} (the rest, e.g. the other label, would be lost); shorten "
        f"{' or '.join(culprits)} by at least {over} tokens{' in all' if len(culprits) > 1 else ''} (e.g. name each "
        f"object in a few words: 'owl'; a character of Chinese or Japanese, or an emoji, often takes 2-3 tokens)")
