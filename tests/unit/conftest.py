"""Tier 1, unit: the paper's maths (vmdiff_ops) and the repository's layout, pure torch and source reading. Nothing
here imports ComfyUI (tests/unit/test_tier.py checks it): the whole tier runs in seconds, alone with
`bash scripts/run_tests.sh unit` (or `pytest tests/unit`, or `-m unit`)."""
