"""Translations (locales/<lang>/main.json, scripts/build_locales.py): the English file is the node schemas' own text,
every language translates every display name, description, input and output name, tooltip and category (a string a
table lacks fails here, so a new input cannot ship untranslated), the paper's symbols survive translation, and
ComfyUI 0.8.0's /i18n serves them all."""
import copy
import json
from pathlib import Path

import pytest

from scripts import build_locales as bl

REPO = Path(__file__).resolve().parents[2]
OTHERS = [lang for lang in bl.LANGUAGES if lang != "en"]
#: written as they are in every language (the paper's symbols and the score's terms)
SYMBOLS = ("α", "β1", "β2", "γ_den", "γ_inv", "γ_gen", "ε_b", "t_den", "SCat", "SInp", "NFE", "z1", "z2", "σ",
           "ν", "K_max", "K_min", "D1", "D2", "T1", "T2")


@pytest.fixture(scope="module")
def infos():
    return bl.node_infos()


@pytest.fixture(scope="module")
def strings(infos):
    return bl.english_strings(bl.english_node_defs(infos), bl.categories(infos))


def test_the_shipped_files_are_what_the_schemas_and_tables_build(infos):
    built = bl.build_locales(infos)
    assert sorted(built) == sorted(bl.LANGUAGES)
    shipped = sorted(p.parent.name for p in (REPO / "locales").glob("*/main.json"))
    assert shipped == sorted(bl.LANGUAGES)  # nothing else under locales/ (ComfyUI takes any folder for a language)
    for lang, content in built.items():
        path = REPO / "locales" / lang / "main.json"
        assert path.read_text(encoding="utf-8") == bl.dump_locale(content), f"{path} is stale: rebuild it"


def test_the_english_file_is_every_node_schema_text(infos):
    en = json.loads((REPO / "locales" / "en" / "main.json").read_text(encoding="utf-8"))["nodeDefs"]
    assert sorted(en) == sorted(infos)  # every node the pack registers
    for node_id, info in infos.items():
        assert en[node_id]["display_name"] == bl.escape_message(info["display_name"])
        names = [*info["input"].get("required", {}), *info["input"].get("optional", {})]
        assert list(en[node_id]["inputs"]) == names
        for name in names:
            spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}[name]
            tooltip = spec[1].get("tooltip") if len(spec) > 1 else None
            assert en[node_id]["inputs"][name].get("tooltip") == tooltip
        assert [o["name"] for o in en[node_id]["outputs"].values()] == info["output_name"]


@pytest.mark.parametrize("lang", OTHERS)
def test_every_string_is_translated(lang, strings):
    assert bl.missing_translations(lang, strings) == []
    table = bl.load_table(lang)
    assert sorted(set(table) - set(strings)) == [], "entries no schema uses any more: remove them"
    content = json.loads((REPO / "locales" / lang / "main.json").read_text(encoding="utf-8"))
    en = json.loads((REPO / "locales" / "en" / "main.json").read_text(encoding="utf-8"))
    for node_id, node in en["nodeDefs"].items():  # same keys, every slot named, every tooltip present
        other = content["nodeDefs"][node_id]
        assert other["display_name"] and other["description"]
        for kind in ("inputs", "outputs"):
            assert list(other[kind]) == list(node[kind])
            for key, slot in node[kind].items():
                assert other[kind][key]["name"]
                assert ("tooltip" in other[kind][key]) == ("tooltip" in slot)
    assert set(content["nodeCategories"]) == set(en["nodeCategories"])


@pytest.mark.parametrize("lang", OTHERS)
def test_the_papers_symbols_survive_translation(lang):
    for english, translated in bl.load_table(lang).items():
        for symbol in SYMBOLS:
            assert translated.count(symbol) >= english.count(symbol), (lang, symbol, english, translated)


@pytest.mark.parametrize("where", ["input tooltip", "output name", "display name"])
def test_a_new_untranslated_string_fails_the_build(infos, where):
    """A node that gains text (here: in memory) without its translations stops the build, naming the string."""
    changed = copy.deepcopy(infos)
    node = changed["VMDiffMixingDenoise"]
    if where == "input tooltip":
        node["input"]["optional"]["new_knob"] = ["FLOAT", {"tooltip": "A brand-new knob nobody translated."}]
        new = "A brand-new knob nobody translated."
    elif where == "output name":
        node["output_name"] = [*node["output_name"], "brand_new_output"]
        node["output_tooltips"] = [*(node.get("output_tooltips") or [None]), None]
        new = "brand_new_output"
    else:
        node["display_name"] = "VMDiff Mixing Denoise (renamed)"
        new = "VMDiff Mixing Denoise (renamed)"
    with pytest.raises(ValueError) as error:
        bl.build_locales(changed)
    message = json.loads(str(error.value).split(": ", 1)[1])
    assert sorted(message) == sorted(OTHERS) and all(new in missing for missing in message.values())


def test_names_and_descriptions_are_escaped_for_the_frontends_message_compiler():
    """vue-i18n reads {…}, @, | and $ as syntax in what it compiles; the files write them as literals."""
    assert bl.escape_message("sam_vit_{b,l,h}_*.pth | a@b") == "sam_vit_{'{'}b,l,h{'}'}_*.pth {'|'} a{'@'}b"
    for lang in bl.LANGUAGES:
        content = json.loads((REPO / "locales" / lang / "main.json").read_text(encoding="utf-8"))
        for node in content["nodeDefs"].values():
            for text in (node["display_name"], node["description"],
                         *(s["name"] for kind in ("inputs", "outputs") for s in node[kind].values())):
                bare = text
                for char in "{}@|$":
                    bare = bare.replace("{'" + char + "'}", "")
                assert not bl.I18N_SPECIAL.search(bare), (lang, text)


def test_the_backend_serves_every_language(comfy_server):
    """ComfyUI 0.8.0's GET /i18n (app/custom_node_manager.build_translations) carries the pack's nodeDefs in all
    15 languages."""
    served = comfy_server.get("/i18n").json()
    for lang in bl.LANGUAGES:
        ours = json.loads((REPO / "locales" / lang / "main.json").read_text(encoding="utf-8"))
        for node_id, entry in ours["nodeDefs"].items():
            assert served[lang]["nodeDefs"][node_id] == entry, (lang, node_id)
    assert served["zh"]["nodeDefs"]["VMDiffMixingDenoise"]["display_name"] == "VMDiff 混合去噪"
