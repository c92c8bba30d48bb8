"""benchmarks/bench_gpu.py's CPU smoke test: the same script as on the GPU, at stand-in shapes (``--device cpu
--tiny``), in a subprocess: it writes the files, loads them through ComfyUI's loaders, runs every stage and prints
the table with every row."""
import re
import subprocess
import sys

import pytest

from vmdiff_cli.comfy_env import REPO_ROOT

STEPS, T_DEN = 4, 2  # t_den_step must be <= steps - 2
STAGES = ("Baseline core_two_redux", "Blending Noise", "Mixing Denoise", "Auto-Tune candidate")
# DiT passes per stage at 4 steps, t_den step 2: KSampler 4; ε_b = (t_den + 1) denoise + (t_den + 1) invert;
# Mixing Denoise 4; one candidate = one Mixing Denoise.
PASSES = {"Baseline core_two_redux": STEPS, "Blending Noise": 2 * (T_DEN + 1), "Mixing Denoise": STEPS,
          "Auto-Tune candidate": STEPS}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_models")
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_gpu", "--device", "cpu", "--tiny", "--steps",
                           str(STEPS), "--t-den-step", str(T_DEN), "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout, out


def rows(stdout: str) -> dict:
    """{(weights, size, cap, stage): cells} of the stage table."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 14 and cells[4] in STAGES:
            found[(cells[1], cells[2], cells[3], cells[4])] = cells
    return found


def test_it_writes_the_files_and_loads_them_through_comfyuis_loaders(run):
    stdout, out = run
    for kind, name in (("diffusion_models", "vmdiff-bench-flux1-dev.safetensors"),
                       ("vae", "vmdiff-bench-ae.safetensors")):
        assert (out / kind / name).stat().st_size > 0
    parts = dict(re.findall(r"^\| (.+?) \| ([\d.]+) \|$", stdout, re.M))
    for part in ("load clip", "load clip_vision", "load style_model", "load vae", "load dino", "load open_clip",
                 "load grounding_dino", "load diffusion model (default)", "load diffusion model (fp8_e4m3fn)",
                 "total"):
        assert part in parts, (part, list(parts))
    assert any(p.startswith("write diffusion_models (0.") for p in parts), list(parts)


def test_the_table_has_every_stage_for_each_weight_type_with_its_dit_passes(run):
    stdout, _ = run
    table = rows(stdout)
    assert len(table) == 2 * len(STAGES), stdout[-3000:]
    for weights in ("bf16", "fp8_e4m3fn"):
        for stage in STAGES:
            cells = table[(weights, "64²", "none", stage)]
            assert cells[0] == "FLUX.1 stand-in" and cells[13] == "yes", cells
            assert int(cells[5]) == PASSES[stage], cells
            assert float(cells[6]) > 0 and float(cells[7]) >= float(cells[6]) * PASSES[stage], cells
            ratio = float(cells[8])
            assert ratio > 0 and (stage != STAGES[0] or ratio == 1.0), cells
    assert "KLEIN: FLUX.2 [klein] 4B is not in this run" in stdout


def test_bad_device_choices_are_refused_with_the_fix():
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_gpu", "--device", "cpu"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "add --tiny" in done.stderr
