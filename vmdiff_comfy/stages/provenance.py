"""The model files behind a result, for the replay metadata VMDiff Save Image writes."""
from __future__ import annotations

MODEL_FILE_SUFFIXES = (".safetensors", ".sft", ".gguf", ".pth", ".pt", ".ckpt", ".bin")


def upstream_model_files(prompt: dict | None, node_id: str | None) -> dict:
    """The model files feeding ``node_id`` in an API prompt: {"<class_type>.<input>": file name} of every upstream
    node input whose value names a model file (for the replay metadata of a result)."""
    if not prompt or node_id is None or str(node_id) not in prompt:
        return {}
    found, seen, stack = {}, set(), [str(node_id)]
    while stack:
        current = stack.pop()
        if current in seen or current not in prompt:
            continue
        seen.add(current)
        node = prompt[current]
        for name, value in node.get("inputs", {}).items():
            if isinstance(value, list) and len(value) == 2:
                stack.append(str(value[0]))
            elif isinstance(value, str) and value.lower().endswith(MODEL_FILE_SUFFIXES):
                found[f"{node['class_type']}.{name}"] = value
    return dict(sorted(found.items()))
