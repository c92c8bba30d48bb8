"""Layout rule of tests/unit/test_layout.py that needs ComfyUI (vmdiff_comfy/stages/settings.py imports it): each stage
setting is declared once."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_each_stage_setting_is_declared_once():
    """One Setting(...) per name in each table (the VMDiff stages'; MagicMix's own, on any model's grid), and no
    node or tool writes its own widget for a declared setting (Mix Tokens N's mix_rule is the N-way rule)."""
    from vmdiff_cli.comfy_env import boot_comfy_inprocess

    boot_comfy_inprocess()
    from vmdiff_pack.vmdiff_comfy.stages.settings import MAGICMIX, SETTINGS

    settings_src = (REPO / "vmdiff_comfy" / "stages" / "settings.py").read_text()
    tables = re.split(r"\nMAGICMIX = ", settings_src)
    assert len(tables) == 2
    for table, text in ((SETTINGS, tables[0]), (MAGICMIX, tables[1])):
        for name in table:
            assert len(re.findall(rf'Setting\(\s*"{name}"', text)) == 1, name
    sources = {p: p.read_text() for folder in ("nodes", "vmdiff_comfy", "vmdiff_cli", "scripts")
               for p in (REPO / folder).rglob("*.py")}
    for name in {*SETTINGS, *MAGICMIX}:
        own_widgets = [p.name for p, s in sources.items() if re.search(rf'\bInput\(\s*"{name}"', s)
                       and p.name != "mix_tokens_n.py"]
        assert not own_widgets, f"{name}: widget written by hand in {own_widgets}"
