"""benchmarks/bench_reference.py at tiny size: one run prints the analytic per-step cost of the reference path
against plain two-reference sampling (real configs) and the measured NFE / wall time / sequence on the stand-ins."""
import importlib.util
import sys

import pytest

from vmdiff_cli.comfy_env import REPO_ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_reference", REPO_ROOT / "benchmarks" / "bench_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_reference"] = module  # dataclasses resolve annotations through the module
    spec.loader.exec_module(module)
    return module


def test_analytic_counts_follow_the_real_configs(bench):
    rows = {(r["model"], r["size"], r["path"]): r for r in bench.analytic_rows()}
    klein = rows[("FLUX.2 [klein] 4B", 1024, "two references (core)")]
    # 512 text tokens (FLUX.2 pads to 512) + 64² image tokens + two 64² references; 4·n²·hidden·blocks FLOPs
    assert (klein["text"], klein["image"], klein["references"], klein["tokens"]) == (512, 4096, 8192, 12800)
    assert klein["attn_tflops"] == pytest.approx(4 * 12800**2 * 3072 * 25 / 1e12)
    kontext = rows[("FLUX.1 Kontext [dev]", 512, "two references (core)")]
    assert kontext["tokens"] == 256 + 1024 + 2048 and kontext["entries_g"] == pytest.approx(3328**2 * 24 * 57 / 1e9)
    for model in ("FLUX.1 Kontext [dev]", "FLUX.2 [klein] 4B"):
        for size in (512, 1024):
            path = rows[(model, size, "reference path (VMDiff)")]
            plain = rows[(model, size, "two references (core)")]
            assert path["tokens"] == plain["tokens"]  # the same joint sequence: no extra tokens, no extra pass
            assert 1.0 < path["vs_core"] < 1.01  # one add per biased logit: < 1 % of the attention FLOPs
            assert rows[(model, size, "one reference")]["vs_core"] < 0.55


def test_one_run_prints_both_tables_at_tiny_size(bench, capsys):
    assert bench.main(["--size", "32", "--steps", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "1. Analytic cost per DiT pass" in out and "2. Measured on the stand-ins" in out
    measured = [line.split() for line in out.split("2. Measured")[1].splitlines()[2:] if line.strip()]
    assert len(measured) >= 6
    for cols in measured:  # ... tokens NFE/step ms/step ms/pass max|Δ|
        tokens, nfe, ms, delta = int(cols[-5]), float(cols[-4]), float(cols[-3]), float(cols[-1])
        assert tokens > 0 and nfe == 1.0 and ms > 0  # one DiT pass per step on every path, as plain sampling
        if "two references (core)" in " ".join(cols):
            assert delta == 0.0
    two = [cols for cols in measured if "two references (core)" in " ".join(cols)]
    flux2 = next(cols for cols in two if "FLUX.2" in " ".join(cols))
    assert int(flux2[-5]) == 512 + 3 * (32 // 16) ** 2  # text padded to 512, image + two references of 2×2 tokens
    for cols in measured:  # with the pack's bias hook: α = 0.5 is a zero bias, exactly plain two-reference sampling
        if "α=0.5" in " ".join(cols):
            assert float(cols[-1]) == 0.0
        if "α=0.3" in " ".join(cols):
            assert float(cols[-1]) > 0.0
