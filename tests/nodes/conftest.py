"""Tier 2, nodes: the pack's nodes and libraries on ComfyUI in-process (the CPU, the tiny random-weight stand-ins of
vmdiff_cli/tiny_models.py). ComfyUI is booted here, once for the tier, before any of its test modules is imported;
`bash scripts/run_tests.sh nodes` runs the tier alone."""
from vmdiff_cli.comfy_env import boot_comfy_inprocess

boot_comfy_inprocess()


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def stand_ins() -> dict:
    """The in-process stand-ins the node tests share (vmdiff_cli/tiny_models.py, seed 0; built once per test module,
    so nothing a module does to them reaches another): ``model`` (tiny FLUX.1 ModelPatcher), ``clip_vision``,
    ``style`` (Redux), ``other_style`` (Redux, seed 1), ``vae``, ``cond`` (a Flux text CONDITIONING)."""
    from vmdiff_cli import tiny_models

    return {"model": tiny_models.tiny_flux(seed=0), "clip_vision": tiny_models.tiny_clip_vision(seed=0),
            "style": tiny_models.tiny_style_model(seed=0), "other_style": tiny_models.tiny_style_model(seed=1),
            "vae": tiny_models.tiny_vae(seed=0), "cond": tiny_models.tiny_flux_conditioning(seed=0)}
