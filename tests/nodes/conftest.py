"""Tier 2, nodes: the pack's nodes and libraries on ComfyUI in-process (the CPU, the tiny random-weight stand-ins of
vmdiff_cli/tiny_models.py). ComfyUI is booted here, once for the tier, before any of its test modules is imported;
`bash scripts/run_tests.sh nodes` runs the tier alone."""
from vmdiff_cli.comfy_env import boot_comfy_inprocess

boot_comfy_inprocess()
