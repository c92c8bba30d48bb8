"""The repository's layout rules (docs/layout.md), read from the source: node files do not import each other,
shipped code (the pack and its CLIs in vmdiff_cli/) imports no maintainers' or test code and names no path into
tests/, the CLI / harness / scripts modules form no import cycle, ``sys.path.insert`` only in the entry points, one
copy of each helper, `.comfyignore` ships the CLIs, vmdiff_comfy/ does not import nodes/, vmdiff_ops/ does not import
ComfyUI, and each stage setting is declared once."""
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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


#: what ComfyUI loads and what a Registry install ships (.comfyignore keeps the rest out)
SHIPPED = ("__init__.py", "nodes", "vmdiff_comfy", "vmdiff_ops", "vmdiff_cli")
#: the only files that may put a folder on sys.path: the two user CLIs run as scripts (``python
#: vmdiff_cli/folder_runner.py`` works from any folder), the tests' root conftest, and the in-process boot that puts
#: ComfyUI's own root first, as ComfyUI's main.py runs from it
SYS_PATH_ENTRY_POINTS = {"vmdiff_cli/run_workflow.py", "vmdiff_cli/folder_runner.py", "tests/conftest.py",
                         "vmdiff_cli/comfy_env.py"}


def python_files(*roots: str) -> list[Path]:
    out = []
    for root in roots:
        path = REPO / root
        out += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [p for p in out if ".venv" not in p.parts and ".cache" not in p.parts]


def test_shipped_code_imports_no_test_script_or_benchmark_code():
    offenders = [f"{p.relative_to(REPO)} imports {m}" for p in python_files(*SHIPPED) for _, m in imports(p)
                 if m.split(".")[0] in {"tests", "scripts", "benchmarks", "tools"}]
    assert not offenders, offenders


def test_shipped_code_names_no_path_into_tests_or_scripts():
    """No ``REPO / "tests"``, ``"tests/custom_nodes"`` or the like in the pack or its CLIs (docstrings aside)."""
    offenders = []
    for path in python_files(*SHIPPED):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and re.fullmatch(r"(tests|scripts|benchmarks)(/.*)?", node.value)):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph(*roots: str) -> dict[str, set[str]]:
    """module → the modules of ``roots`` it imports (at any depth of the file: lazy imports count too)."""
    files = {module_name(p): p for p in python_files(*roots)}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for level, module in imports(path):
            if level:
                base = package.split(".")
                base = base[:len(base) - (level - 1)] if level > 1 else base
                module = ".".join([*base, module])
            while module and module not in files:
                module = module.rpartition(".")[0]
            if module and module != name:
                targets.add(module)
        graph[name] = targets
    return graph


def test_no_import_cycles_among_the_clis_scripts_and_harness():
    graph = import_graph("vmdiff_cli", "scripts", "benchmarks", "tests/support")
    assert {"vmdiff_cli.folder_ray", "vmdiff_cli.folder_runner", "scripts.build_workflows"} <= set(graph)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_sys_path_is_edited_only_in_the_entry_points():
    offenders = []
    for path in python_files(*SHIPPED, "scripts", "benchmarks", "tests"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and ast.unparse(node.func.value) == "sys.path" and node.func.attr in {"insert", "append"}
                    or isinstance(node, ast.Assign)
                    and any(ast.unparse(t).startswith("sys.path[") for t in node.targets)):
                rel = str(path.relative_to(REPO))
                if rel not in SYS_PATH_ENTRY_POINTS:
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders


def test_one_copy_of_each_helper():
    """No function or class defined twice at the top level of the CLIs, scripts, benchmarks and the test harness
    (``main`` aside), nor a test helper that has a home in the harness defined again in a test file."""
    homes: dict[str, list[str]] = {}
    for path in python_files("vmdiff_cli", "scripts", "benchmarks", "tests/support", "tests/custom_nodes"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name != "main":
                homes.setdefault(node.name, []).append(str(path.relative_to(REPO)))
    twice = {name: where for name, where in homes.items() if len(where) > 1}
    assert not twice, twice
    for name in ("ForcedScorer", "write_extra_model_paths_yaml", "upload_name", "recipe_hash", "source_digest"):
        assert len(homes.get(name, [])) == 1, (name, homes.get(name))
    harness_only = {"ForcedScorer", "TINY_LOADERS", "upload_name", "write_extra_model_paths_yaml", "recipe_hash"}
    again = [f"{p.relative_to(REPO)}: {name}" for p in python_files("tests") if p.name.startswith("test_")
             for n in ast.parse(p.read_text()).body
             for name in ([n.name] if isinstance(n, (ast.FunctionDef, ast.ClassDef)) else
                          [ast.unparse(t) for t in n.targets] if isinstance(n, ast.Assign) else [])
             if name in harness_only]
    assert not again, again


def test_the_registry_pack_ships_the_clis_and_not_the_dev_folders():
    ignored = {line.strip().rstrip("/") for line in (REPO / ".comfyignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not ignored & {"vmdiff_cli", "nodes", "vmdiff_comfy", "vmdiff_ops", "web", "workflows"}, ignored
    assert {"tests", "scripts", "benchmarks"} <= ignored, ignored
    assert not (REPO / "tools").exists() or not list((REPO / "tools").rglob("*.py")), "tools/ is split by audience"


def test_library_layers_do_not_import_upwards():
    for path in (REPO / "vmdiff_comfy").rglob("*.py"):
        for level, module in imports(path):
            assert not (level and module.split(".")[0] == "nodes") and "nodes." not in module, (path, module)
    for path in (REPO / "vmdiff_ops").rglob("*.py"):
        for _, module in imports(path):
            assert module.split(".")[0] not in {"comfy", "comfy_api", "nodes", "folder_paths"}, (path, module)


def test_vmdiff_ops_is_loaded_under_one_name():
    import vmdiff_pack.vmdiff_ops  # noqa: F401

    assert "vmdiff_ops" not in sys.modules, "import vmdiff_ops as vmdiff_pack.vmdiff_ops (one copy of PRESETS)"
