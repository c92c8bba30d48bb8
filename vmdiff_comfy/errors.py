"""The one error type of bad node inputs, and the one range check of every node's inputs.

Every numeric input of a node declares its range in its schema (for the VMDiff stages: ``Setting(range=…)`` in
vmdiff_comfy/stages/settings.py). ``@guard_inputs`` on a node class checks those ranges, the finiteness of the
numbers and the combo options, once when ComfyUI validates the prompt (typed values) and once before ``execute``
(values that arrive by link, unknown at validation); a node's own ``validate_inputs`` then only checks what relates
two inputs (e.g. t_den_step ≤ steps − 2).
"""
from __future__ import annotations

import inspect
import math
import numbers


class VMDiffInputError(ValueError):
    """A bad node input; the message names the input and the fix."""


def raise_problems(found: list[str]) -> None:
    """Raise one VMDiffInputError naming every problem of ``found`` (nothing if it is empty)."""
    if found:
        raise VMDiffInputError("; ".join(found))


def number_problem(name: str, value, low=None, high=None) -> str | None:
    """What is wrong with the number ``value`` of input ``name`` (declared range [low, high]), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name}: expected a number, got {type(value).__name__} {value!r}"
    if not math.isfinite(value):
        return (f"{name}: {value} is not a finite number (a NaN or infinity from the node linked into it?); give a "
                f"value from {low} to {high}")
    if low is not None and value < low:
        return f"{name}: {value} is below the minimum {low}"
    if high is not None and value > high:
        return f"{name}: {value} is above the maximum {high}"
    return None


def numeric_inputs() -> tuple:
    """ComfyUI's numeric input classes (imported here, at use: this module is also imported without ComfyUI, e.g.
    by the CLIs' label check through vmdiff_comfy/labels.py)."""
    from comfy_api.latest import io

    return io.Int.Input, io.Float.Input


def schema_problems(node, values: dict, combos: bool = False) -> list[str]:
    """Every numeric input of ``node``'s schema among ``values`` against its declared min/max and finiteness (and,
    with ``combos``, every combo against its options). None (a linked input at validation time) is skipped."""
    from comfy_api.latest import io

    found = []
    for spec in node.define_schema().inputs:
        value = values.get(spec.id)
        if value is None:
            continue
        if isinstance(spec, numeric_inputs()):
            found.append(number_problem(spec.id, value, spec.min, spec.max))
        elif combos and isinstance(spec, io.Combo.Input) and value not in spec.options:
            found.append(f"{spec.id}: unknown value {value!r}; expected one of {', '.join(map(str, spec.options))}")
    return [p for p in found if p]


def guard_inputs(node):
    """Class decorator of a node with numeric inputs: their declared ranges, their finiteness and the combo options
    hold whatever the source of a value. ComfyUI checks a widget's min/max only when it is typed and the node has
    no ``validate_inputs``, never its finiteness, and a value that arrives by link skips the check (a NaN from a
    math node, a seed above the range). Adds the schema's checks to ``validate_inputs`` (typed values; the node's
    own ``validate_inputs``, for rules relating two inputs, runs after them) and runs them again before
    ``execute`` (linked values), naming the input: ``VMDiffInputError("alpha: 1.5 is above the maximum 1.0")``.
    Returns ``node`` (changed in place)."""
    if vars(node).get("_vmdiff_guarded") or not any(isinstance(i, numeric_inputs())
                                                     for i in node.define_schema().inputs):
        return node
    execute = node.execute.__func__
    signature = inspect.signature(execute)
    varkw = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
    own_validate = node.validate_inputs.__func__ if "validate_inputs" in vars(node) else None

    def guarded_execute(cls, *args, **kwargs):
        values = signature.bind_partial(cls, *args, **kwargs).arguments
        values = {**values, **values.pop(varkw, {})} if varkw else dict(values)
        raise_problems(schema_problems(cls, values, combos=True))
        return execute(cls, *args, **kwargs)

    def validate_inputs(cls, **values):
        # a node with validate_inputs loses ComfyUI's own range and combo checks of the inputs it takes: done here
        found = schema_problems(cls, values, combos=True)
        if found:
            return "; ".join(found)
        return own_validate(cls, **values) if own_validate else True

    guarded_execute.__doc__, guarded_execute.__wrapped__ = execute.__doc__, execute
    node.execute, node.validate_inputs = classmethod(guarded_execute), classmethod(validate_inputs)
    node._vmdiff_guarded = True
    return node
