"""The repository's layout rules (docs/developing.md, "Layout"), read from the source: node files do not import each
other, tools/ and benchmarks/ do not import tests/, vmdiff_comfy/ does not import nodes/, vmdiff_ops/ does not import
ComfyUI, and each stage setting is declared once."""
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: node files that may still import a sibling until their shared code moves into vmdiff_comfy/ (none left).
PENDING_SCORER_MOVE: set[str] = set()


def imports(path: Path) -> list[tuple[int, str]]:
    """(relative level, dotted module) of every import in ``path``; ``from . import x`` gives (1, "x")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                found.append((node.level, node.module))
            else:
                found += [(node.level, a.name) for a in node.names]
    return found


def node_modules() -> set[str]:
    """The modules under nodes/ that define a ComfyUI node class."""
    out = set()
    for path in (REPO / "nodes").glob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.ClassDef) and any(ast.unparse(b).endswith("ComfyNode") for b in n.bases)
               for n in tree.body):
            out.add(path.stem)
    return out


def test_no_node_module_imports_a_sibling_node_module():
    nodes, offenders = node_modules(), []
    assert {"blending_noise", "mixing_denoise", "auto_tune", "magicmix", "random_noise"} <= nodes
    for path in (REPO / "nodes").glob("*.py"):
        if path.stem in PENDING_SCORER_MOVE or path.stem == "__init__":
            continue
        if path.stem not in nodes:  # a library among the node files: it belongs in vmdiff_comfy/
            offenders.append(f"nodes/{path.name} defines no ComfyUI node")
        for level, module in imports(path):
            if level == 1:  # `from .x import …`: another file of nodes/
                offenders.append(f"nodes/{path.name} imports .{module}")
    assert not offenders, offenders


def test_tools_and_benchmarks_do_not_import_tests():
    offenders = [f"{p.relative_to(REPO)} imports {m}" for folder in ("tools", "benchmarks")
                 for p in (REPO / folder).rglob("*.py") for _, m in imports(p) if m.split(".")[0] == "tests"]
    assert not offenders, offenders


def test_library_layers_do_not_import_upwards():
    for path in (REPO / "vmdiff_comfy").rglob("*.py"):
        for level, module in imports(path):
            assert not (level and module.split(".")[0] == "nodes") and "nodes." not in module, (path, module)
    for path in (REPO / "vmdiff_ops").rglob("*.py"):
        for _, module in imports(path):
            assert module.split(".")[0] not in {"comfy", "comfy_api", "nodes", "folder_paths"}, (path, module)


def test_each_stage_setting_is_declared_once():
    """One Setting(...) per name in each table (the VMDiff stages'; MagicMix's own, on any model's grid), and no
    node or tool writes its own widget for a declared setting (Mix Tokens N's mix_rule is the N-way rule)."""
    from tools.comfy_env import boot_comfy_inprocess

    boot_comfy_inprocess()
    from vmdiff_pack.vmdiff_comfy.stages.settings import MAGICMIX, SETTINGS

    settings_src = (REPO / "vmdiff_comfy" / "stages" / "settings.py").read_text()
    tables = re.split(r"\nMAGICMIX = ", settings_src)
    assert len(tables) == 2
    for table, text in ((SETTINGS, tables[0]), (MAGICMIX, tables[1])):
        for name in table:
            assert len(re.findall(rf'Setting\(\s*"{name}"', text)) == 1, name
    sources = {p: p.read_text() for folder in ("nodes", "vmdiff_comfy", "tools") for p in (REPO / folder).rglob("*.py")}
    for name in {*SETTINGS, *MAGICMIX}:
        own_widgets = [p.name for p, s in sources.items() if re.search(rf'\bInput\(\s*"{name}"', s)
                       and p.name != "mix_tokens_n.py"]
        assert not own_widgets, f"{name}: widget written by hand in {own_widgets}"


def test_vmdiff_ops_is_loaded_under_one_name():
    import vmdiff_pack.vmdiff_ops  # noqa: F401

    assert "vmdiff_ops" not in sys.modules, "import vmdiff_ops as vmdiff_pack.vmdiff_ops (one copy of PRESETS)"
