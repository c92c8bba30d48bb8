"""Faults of round 3 (issue 20, kinds 2-5) through one real server, as a user meets them: labels that are not what
they look like, a CONDITIONING of more than one prompt, tensors of another dtype or an extreme shape, a model that
returns NaN inside Auto-Tune. Each kind is tried with several members; after each case the server must run a valid
prompt (checked at the end of each group, and by the next case's own success where one is expected).

The server, its tiny stand-in models and the workflow helpers are those of tests/test_reliability.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_reliability import (Case, add, matrix, nid, outcome, server, set_input, tiny_workflow,  # noqa: F401
                                    uploaded, valid_prompt, _seed)

pytestmark = pytest.mark.slow


def run_case(server, uploaded, matrix, case: Case) -> str:
    api = tiny_workflow(case.workflow, uploaded, seed=next(_seed))
    case.mutate(api)
    got, message = outcome(server, api)
    matrix.append((case.name, got, message.replace("\n", " ")))
    print(f"{case.name} → {got}: {message[:400]}")
    assert got == case.expect, message
    for part in case.says:
        assert part in message, message
    return message


def check_server_goes_on(server, uploaded):
    assert server.run(valid_prompt(uploaded), timeout=300)["status"]["status_str"] == "success"


# --------------------------------------------------------------------------------------------------
# kind 2: labels that are not what they look like

INVISIBLE_LABELS = {"zero-width space U+200B": "\u200b", "BOM U+FEFF": "\ufeff", "NBSP only": "\xa0\xa0",
                    "tabs and newlines": "\t\n\t", "RTL / LTR marks": "\u200f\u200e", "ZWSP around a space": "\u200b \u200b"}

LABEL_CASES = [
    *(Case(f"Fusion Prompt label_1 of {what}", set_input("VMDiffFusionPrompt", label_1=text), "failed",
           ("label_1: the object label is empty", "invisible characters", "visible words"))
      for what, text in INVISIBLE_LABELS.items()),
    *(Case(f"Scorer label_2 of {what}", set_input("VMDiffScorer", label_2=text), "failed",
           ("label_2: the object label is empty", "visible words"), "vmdiff_manual_scored")
      for what, text in list(INVISIBLE_LABELS.items())[::2]),
    # placeholders inside a label are text, the template is filled once
    *(Case(f"label_1 = {text!r} (kept as written)", set_input("VMDiffFusionPrompt", label_1=text), "handled",
           (f"A photo of {text} creatively fused with jar.",))
      for text in ("{T2}", "{T1}", "{}", "%s", "{T1} and {T2}")),
    Case("label_2 = '{T1}' (kept as written)", set_input("VMDiffFusionPrompt", label_2="{T1}"), "handled",
         ("A photo of owl creatively fused with {T1}.",)),
    Case("label_1 with a tab, an NBSP and a BOM inside / around", set_input("VMDiffFusionPrompt",
                                                                           label_1="\ufeffsnowy\towl\xa0glass\u200b"),
         "handled", ("A photo of snowy owl glass creatively fused with jar.",)),
    # one length rule wherever a CLIP reads a label: the Scorer's OpenCLIP refuses what it would cut
    Case("Scorer label_2 of 10 000 characters (OpenCLIP)", set_input("VMDiffScorer", label_2="jar " * 2500), "failed",
         ("label_2: too long by", "CLIP tokens", "the Scorer's CLIP text", "75 is all the CLIP window reads"),
         "vmdiff_manual_scored"),
    Case("Scorer label_1 of 40 Chinese characters (OpenCLIP)", set_input("VMDiffScorer", label_1="猫头鹰" * 13 + "罐"),
         "failed", ("label_1: too long by", "label_text 'official'"), "vmdiff_manual_scored"),
    Case("Scorer label_1 of 70 tokens ('plain' label text fits, 'official' does not)",
         set_input("VMDiffScorer", label_1="owl " * 70, label_text="official"), "failed",
         ("label_1: too long by",), "vmdiff_manual_scored"),
    Case("Scorer label_1 of 70 tokens, label_text plain (fits the window)",
         set_input("VMDiffScorer", label_1="owl " * 70, label_text="plain"), "handled", ("S = ",),
         "vmdiff_manual_scored"),
    Case("Fusion Prompt label_2 of 10 000 characters", set_input("VMDiffFusionPrompt", label_2="jar " * 2500), "failed",
         ("label_2: too long by 2434 CLIP tokens",)),
]


@pytest.mark.parametrize("case", LABEL_CASES, ids=[c.name for c in LABEL_CASES])
def test_labels(server, uploaded, matrix, case):
    run_case(server, uploaded, matrix, case)


def test_labels_server_goes_on(server, uploaded):
    check_server_goes_on(server, uploaded)


def test_folder_runner_refuses_invisible_file_names(tmp_path: Path):
    """The folder runner's labels are file names: a name of only invisible characters is an empty label, refused
    before any work; visible names with a BOM / NBSP around them are cleaned like the nodes' labels."""
    from PIL import Image

    from tools.folder_runner import RunnerError, find_objects

    for name in ("owl", "\ufeffjar\xa0", "\u200b"):
        Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / f"{name}.png")
    with pytest.raises(RunnerError, match="gives an empty label"):
        find_objects(tmp_path)
    (tmp_path / "\u200b.png").unlink()
    assert sorted(o["label"] for o in find_objects(tmp_path)) == ["jar", "owl"]
