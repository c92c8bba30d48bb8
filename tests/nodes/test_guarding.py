"""Input guarding is visible where it applies and each range is checked in one place: every node with numeric
inputs carries ``@guard_inputs`` (vmdiff_comfy/errors.py) in its own file, nothing wraps nodes behind the reader's
back, and no node re-checks the declared ranges the guard already checks (tests/nodes/test_schema_walk.py walks the
behaviour: every numeric input at min, max, outside and NaN, typed and linked)."""
import ast
import re
from pathlib import Path

import pytest

from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack

boot_comfy_inprocess()
load_pack()
from comfy_api.latest import io  # noqa: E402

from vmdiff_pack.nodes import NODES  # noqa: E402
from vmdiff_pack.vmdiff_comfy.errors import VMDiffInputError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NUMERIC = (io.Int.Input, io.Float.Input)


def decorators(path: Path) -> dict[str, list[str]]:
    tree = ast.parse(path.read_text())
    return {n.name: [ast.unparse(d) for d in n.decorator_list] for n in tree.body if isinstance(n, ast.ClassDef)}


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_a_node_with_numbers_shows_its_guard(node):
    file = REPO / "nodes" / f"{node.__module__.rsplit('.', 1)[-1]}.py"
    numeric = any(isinstance(i, NUMERIC) for i in node.define_schema().inputs)
    shown = "guard_inputs" in decorators(file)[node.__name__]
    assert shown == numeric, f"{node.__name__}: numeric inputs {numeric}, @guard_inputs in {file.name} {shown}"
    assert bool(vars(node).get("_vmdiff_guarded")) == numeric


def test_nothing_wraps_the_nodes_at_import():
    text = (REPO / "nodes" / "__init__.py").read_text()
    assert "guard_inputs(" not in text


def test_no_node_rechecks_the_declared_ranges():
    """The declared ranges (settings.py) are checked by @guard_inputs; a node's validate_inputs/execute checks
    only what relates two inputs. (The stage functions check StageSettings as a whole for their Python callers.)"""
    for path in (REPO / "nodes").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"settings\.problems\(|\bschema_problems\(|\bnumber_problem\(", text), path.name


@pytest.mark.parametrize("node, name, value", [
    ("VMDiffBlendingNoise", "inversion", "backwards"), ("VMDiffMixingDenoise", "mix_rule", "average"),
    ("VMDiffStageSettings", "context", "text_only"), ("VMDiffMagicMix", "scheduler", "nonsense"),
    ("VMDiffMixTokensN", "mix_rule", "official"),
])
def test_a_linked_combo_value_is_refused_by_name_before_the_node_runs(node, name, value):
    """A combo value that arrives by link (e.g. from a string primitive) is checked like a number."""
    cls = next(n for n in NODES if n.__name__ == node)
    with pytest.raises(VMDiffInputError, match=f"^{name}: unknown value"):
        cls.execute(**{name: value})
    assert cls.validate_inputs(**{name: value}).startswith(f"{name}: unknown value")
