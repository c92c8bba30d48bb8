"""Writes the pack's translations, ``locales/<lang>/main.json``, in the ``nodeDefs`` format ComfyUI's frontend reads.

ComfyUI (``app/custom_node_manager.py``, ``build_translations``; already in 0.8.0) merges every pack's
``locales/<lang>/main.json`` into ``GET /i18n``; the frontend looks a node's text up under
``nodeDefs.<node id>.{display_name, description, inputs.<input>.{name, tooltip}, outputs.<slot>.{name, tooltip}}``
(the shape of the frontend's own ``src/locales/<lang>/nodeDefs.json``) and a category under
``nodeCategories.<name>``.

One place declares the text: the node schemas (``nodes/*.py``). The English file is generated from them, in-process,
from the same ``/object_info`` entry the server sends (``GET_NODE_INFO_V1``). Every other language is a table
``scripts/translations/<lang>.json`` keyed by the English string ({English: translation}); a string the table lacks
stops the build and fails tests/server/test_locales.py, so a new input cannot ship untranslated.

    .venv/bin/python -m scripts.build_locales           # rewrites locales/<lang>/main.json
    .venv/bin/python -m scripts.build_locales --check   # exit 1 if a file is stale or a string untranslated
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from scripts.generated_files import write_or_check

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCALES = REPO_ROOT / "locales"
# not under locales/: ComfyUI would take any folder there for a language
TABLES = REPO_ROOT / "scripts" / "translations"
#: the languages frontend 1.58.1 ships (its src/locales/ folder names; the frontend asks /i18n by these codes)
LANGUAGES = ("en", "ar", "de", "es", "fa", "fr", "he", "it", "ja", "ko", "pt-BR", "ru", "tr", "zh", "zh-TW")
#: vue-i18n's message syntax: the frontend compiles display names, descriptions and slot names (not 1.58.1's
#: tooltips), so these characters are written as literals ({'{'}) there, as the frontend's own locales do
I18N_SPECIAL = re.compile(r"[{}@|$]")


def node_infos() -> dict[str, dict]:
    """{node id: the /object_info entry ComfyUI builds from the node's schema}, for every node the pack registers,
    in registration order."""
    from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

    boot_comfy_inprocess()
    load_pack()
    from vmdiff_pack.nodes import NODES

    return {info["name"]: info for info in (node.GET_NODE_INFO_V1() for node in NODES)}


def english_node_defs(infos: dict[str, dict]) -> dict:
    """The English ``nodeDefs`` of the pack: the schemas' own text, nothing added."""
    defs = {}
    for node_id, info in infos.items():
        inputs = {}
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                entry = {"name": opts.get("display_name") or name}
                if opts.get("tooltip"):
                    entry["tooltip"] = opts["tooltip"]
                inputs[name] = entry
        outputs = {}
        for slot, name in enumerate(info["output_name"]):
            entry = {"name": name}
            tooltip = (info.get("output_tooltips") or [None] * len(info["output_name"]))[slot]
            if tooltip:
                entry["tooltip"] = tooltip
            outputs[str(slot)] = entry
        defs[node_id] = {"display_name": info["display_name"] or node_id, "description": info["description"] or "",
                         "inputs": inputs, "outputs": outputs}
    return defs


def categories(infos: dict[str, dict]) -> list[str]:
    """Every category path segment the pack's nodes use (``VMDiff/scoring`` → VMDiff, scoring)."""
    return sorted({part for info in infos.values() for part in info["category"].split("/") if part})


def english_strings(defs: dict, cats: list[str]) -> list[str]:
    """Every distinct English string a translation table must carry, in first-seen order."""
    seen: dict[str, None] = {}
    for node in defs.values():
        seen[node["display_name"]] = None
        if node["description"]:
            seen[node["description"]] = None
        for slot in (*node["inputs"].values(), *node["outputs"].values()):
            seen[slot["name"]] = None
            if slot.get("tooltip"):
                seen[slot["tooltip"]] = None
    for cat in cats:
        seen[cat] = None
    return list(seen)


def escape_message(text: str) -> str:
    """A literal string as a vue-i18n message (the frontend compiles names and descriptions)."""
    return I18N_SPECIAL.sub(lambda m: "{'" + m.group(0) + "'}", text)


def load_table(lang: str) -> dict[str, str]:
    path = TABLES / f"{lang}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def missing_translations(lang: str, strings: list[str], table: dict[str, str] | None = None) -> list[str]:
    """The English strings ``lang``'s table lacks (or leaves empty)."""
    table = load_table(lang) if table is None else table
    return [s for s in strings if not str(table.get(s, "")).strip()]


def translate_defs(defs: dict, cats: list[str], table: dict[str, str] | None) -> dict:
    """``main.json`` of one language: ``table`` maps each English string (None: English itself). Names and
    descriptions escaped as vue-i18n messages; tooltips verbatim (frontend 1.58.1 reads them raw)."""
    def tr(text: str) -> str:
        return text if table is None else table[text]

    out_defs = {}
    for node_id, node in defs.items():
        entry = {"display_name": escape_message(tr(node["display_name"])),
                 "description": escape_message(tr(node["description"])) if node["description"] else ""}
        for kind in ("inputs", "outputs"):
            entry[kind] = {}
            for key, slot in node[kind].items():
                item = {"name": escape_message(tr(slot["name"]))}
                if slot.get("tooltip"):
                    item["tooltip"] = tr(slot["tooltip"])
                entry[kind][key] = item
        out_defs[node_id] = entry
    return {"nodeDefs": out_defs, "nodeCategories": {c.replace(".", "_"): escape_message(tr(c)) for c in cats}}


def build_locales(infos: dict[str, dict] | None = None) -> dict[str, dict]:
    """{lang: main.json content}; raises ValueError naming every untranslated string per language."""
    infos = node_infos() if infos is None else infos
    defs, cats = english_node_defs(infos), categories(infos)
    strings = english_strings(defs, cats)
    problems = {lang: missing_translations(lang, strings) for lang in LANGUAGES if lang != "en"}
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        raise ValueError("untranslated strings (add them to scripts/translations/<lang>.json): " + json.dumps(
            problems, ensure_ascii=False, indent=1))
    return {lang: translate_defs(defs, cats, None if lang == "en" else load_table(lang)) for lang in LANGUAGES}


def dump_locale(content: dict) -> str:
    return json.dumps(content, ensure_ascii=False, indent=1) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    ap.add_argument("--strings", action="store_true", help="print the English strings the tables must carry")
    args = ap.parse_args(argv)
    if args.strings:
        infos = node_infos()
        defs = english_node_defs(infos)
        print(json.dumps(english_strings(defs, categories(infos)), ensure_ascii=False, indent=1))
        return 0
    return write_or_check({LOCALES / lang / "main.json": dump_locale(content)
                           for lang, content in build_locales().items()}, args.check, "python -m scripts.build_locales")


if __name__ == "__main__":
    raise SystemExit(main())
