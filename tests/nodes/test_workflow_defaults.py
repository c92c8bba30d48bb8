"""One edit changes a default: every shipped workflow (workflows/*.json and its API twin in workflows/api/) saves
each VMDiff widget at the default its node declares (vmdiff_comfy/stages/settings.py), unless the workflow's
description in scripts/build_workflows.py sets it on purpose, with a reason its Note shows. And the shipped files
are what the builder writes now: change a declared default without ``python scripts/build_workflows.py`` and this
fails."""
import copy
import json
from pathlib import Path

import pytest

from vmdiff_cli.comfy_env import boot_comfy_inprocess

boot_comfy_inprocess()
from scripts import build_workflows  # noqa: E402
from scripts.build_workflows import PRIMITIVES, _input_spec, build_ui, declared_default  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
UI = {p.stem: json.loads(p.read_text()) for p in sorted((REPO / "workflows").glob("*.json"))}


@pytest.fixture(scope="module")
def classes():
    return build_workflows.node_definitions()


def widget_values(node: dict, cls) -> dict:
    """{widget name: (saved value, linked?)} of a UI node, read positionally as the frontend saves them."""
    linked = {i["widget"]["name"] for i in node["inputs"] if "widget" in i and i.get("link") is not None}
    values, saved = {}, iter(node["widgets_values"])
    for name, kind, opts in _input_spec(cls):
        if kind not in PRIMITIVES or opts.get("forceInput"):
            continue
        value = next(saved)
        if "default" in opts:  # not a model-file choice (its options are the files found)
            values[name] = (value, name in linked)
        if opts.get("control_after_generate"):
            next(saved)
        if opts.get("image_upload"):
            next(saved)
    return values


def off_default(workflow: dict, classes) -> list[str]:
    """Every VMDiff widget of a UI workflow away from its declared default without a reason."""
    found = []
    for node in workflow["nodes"]:
        if not node["type"].startswith("VMDiff"):
            continue
        reasons = node["properties"].get("vmdiff_on_purpose", {})
        for name, (value, linked) in widget_values(node, classes[node["type"]]).items():
            default = declared_default(classes, node["type"], name)
            if name in reasons:
                assert value != default, f"{node['type']}.{name}: 'on purpose' but equal to the default {default!r}"
            elif not linked and value != default:
                found.append(f"{node['type']}.{name} = {value!r}, declared default {default!r}")
    return found


def test_there_are_workflows_and_reasons():
    assert len(UI) >= 10
    reasons = [r for w in UI.values() for n in w["nodes"] for r in n["properties"].get("vmdiff_on_purpose", {})]
    assert reasons, "no workflow sets anything on purpose: the check below would not see a reason"


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_widgets_are_the_declared_defaults_or_set_on_purpose(name, classes):
    workflow = UI[name]
    assert off_default(workflow, classes) == []
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note"]
    reasons = {r for n in workflow["nodes"] for r in n["properties"].get("vmdiff_on_purpose", {}).values()}
    if reasons:
        assert len(notes) == 1 and all(r in notes[0] for r in reasons), notes
    else:
        assert not notes


@pytest.mark.parametrize("name", sorted(UI))
def test_api_twin_widgets_are_the_declared_defaults_or_set_on_purpose(name, classes):
    api = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    ui_nodes = {str(n["id"]): n for n in UI[name]["nodes"]}
    for node_id, node in api.items():
        if not node["class_type"].startswith("VMDiff"):
            continue
        reasons = ui_nodes[node_id]["properties"].get("vmdiff_on_purpose", {})
        declared = {n for n, _, opts in _input_spec(classes[node["class_type"]]) if "default" in opts}
        for key, value in node["inputs"].items():
            if isinstance(value, list) or key in reasons or key not in declared:  # a link, on purpose, a file
                continue
            default = declared_default(classes, node["class_type"], key)
            assert value == default, f"{name}: {node['class_type']}.{key} = {value!r}, declared {default!r}"


@pytest.mark.parametrize("name", sorted(build_workflows.GRAPHS))
def test_shipped_workflows_are_what_the_builder_writes_now(name, classes):
    """A default changed in settings.py (or a description changed) without rebuilding the workflows fails here."""
    assert build_ui(build_workflows.GRAPHS[name], classes) == UI[name], (
        f"workflows/{name}.json is stale: run python scripts/build_workflows.py")


def test_a_changed_default_is_caught(classes, monkeypatch):
    """The check itself: a declared default that moved (γ_den + 1.5) makes the shipped manual workflow wrong."""
    from vmdiff_pack.vmdiff_comfy.stages import settings

    cls = classes["VMDiffBlendingNoise"]
    shipped = settings.SETTINGS["guidance_denoise"].default
    moved = {"guidance_denoise": shipped + 1.5}
    original = cls.INPUT_TYPES

    def input_types():
        spec = copy.deepcopy(original())
        for section in spec.values():
            for name, entry in section.items():
                if name in moved and len(entry) > 1:
                    section[name] = (entry[0], {**entry[1], "default": moved[name]})
        return spec

    monkeypatch.setattr(cls, "INPUT_TYPES", input_types)
    assert off_default(UI["vmdiff_manual"], classes) == [
        f"VMDiffBlendingNoise.guidance_denoise = {shipped!r}, declared default {shipped + 1.5!r}"]
