"""benchmarks/bench_gpu.py's CPU smoke test: the same script as on the GPU, at the suite's stand-in shapes (``--device
cpu --tiny``: hidden-64 DiTs, the in-memory tiny CLIP-L / SigLIP / Redux, the tiny scorers), in a subprocess: it
writes the files, loads the DiTs and VAEs through ComfyUI's loaders, runs every stage of FLUX.1 + Redux and of
FLUX.2 + references, and prints the parts table, its peak host memory and the stage table with every row."""
import re
import subprocess
import sys

import pytest

from vmdiff_cli.comfy_env import REPO_ROOT

STEPS, T_DEN = 4, 2  # t_den_step must be <= steps - 2
STAGES = ("Baseline", "Blending Noise", "Mixing Denoise", "Auto-Tune candidate")
# DiT passes per stage at 4 steps, t_den step 2: the baseline samples 4 steps; ε_b = (t_den + 1) denoise +
# (t_den + 1) inversion passes; Mixing Denoise 4; one candidate = one Mixing Denoise.
PASSES = {"Baseline": STEPS, "Blending Noise": 2 * (T_DEN + 1), "Mixing Denoise": STEPS,
          "Auto-Tune candidate": STEPS}
ROWS = {("FLUX.1 stand-in", "bf16"): "core_two_redux", ("FLUX.1 stand-in", "fp8_e4m3fn"): "core_two_redux",
        ("FLUX.2 stand-in", "bf16"): "core two-reference"}
PEAK_RSS_MIB = 1600  # measured ~1.25 GiB (ComfyUI + the pack's boot alone is ~0.85 GiB); was 15.2 GB at FLUX.1 width


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_models")
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_gpu", "--device", "cpu", "--tiny", "--steps",
                           str(STEPS), "--t-den-step", str(T_DEN), "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout, out


def rows(stdout: str) -> dict:
    """{(model, weights, size, cap, stage): cells} of the stage table."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 14 and cells[4] in STAGES:
            found[(cells[0], cells[1], cells[2], cells[3], cells[4])] = cells
    return found


def test_it_writes_the_files_and_loads_them_through_comfyuis_loaders(run):
    stdout, out = run
    for kind, name in (("diffusion_models", "vmdiff-bench-flux1-tiny.safetensors"),
                       ("diffusion_models", "vmdiff-bench-flux2-tiny.safetensors"),
                       ("vae", "vmdiff-bench-taesd16.safetensors"), ("vae", "vmdiff-bench-taesd128.safetensors")):
        assert (out / kind / name).stat().st_size > 0
    parts = dict(re.findall(r"^\| (.+?) \| ([\d.]+) \|$", stdout, re.M))
    for part in ("boot ComfyUI + pack", "load clip (in-memory stand-in)", "load dino", "load open_clip",
                 "load grounding_dino", "load flux1 vae", "load flux1 clip_vision (in-memory stand-in)",
                 "load flux1 style_model (in-memory stand-in)", "load flux1 DiT (default)",
                 "load flux1 DiT (fp8_e4m3fn)", "load flux2 vae", "load flux2 DiT (default)",
                 "stages flux1 bf16 64² cap none", "stages flux2 bf16 64² cap none", "total"):
        assert part in parts, (part, list(parts))
    assert any(p.startswith("write flux1 DiT (0.000 B params") for p in parts), list(parts)


def test_the_table_has_every_stage_with_its_dit_passes_and_the_baseline_ratio(run):
    stdout, _ = run
    table = rows(stdout)
    assert len(table) == len(ROWS) * len(STAGES), stdout[-4000:]
    for (model, weights), baseline in ROWS.items():
        for stage in STAGES:
            cells = table[(model, weights, "64²", "none", stage)]
            assert cells[13].startswith("yes"), cells
            assert int(cells[5]) == PASSES[stage], cells
            assert float(cells[6]) > 0 and float(cells[7]) >= float(cells[6]) * PASSES[stage], cells
            ratio = float(cells[8])
            assert ratio > 0 and (stage != STAGES[0] or ratio == 1.0), cells
        assert table[(model, weights, "64²", "none", "Baseline")][13] == f"yes ({baseline})"


def test_it_stays_small_and_says_why_klein_4b_is_not_loadable(run):
    stdout, _ = run
    peak = float(re.search(r"^Peak host memory \(RSS\): (\d+) MiB$", stdout, re.M).group(1))
    assert 0 < peak < PEAK_RSS_MIB, peak
    assert re.search(r"^KLEIN: FLUX.2 \[klein\] 4B at real shapes: this run used the FLUX.2 stand-in instead. "
                     r"ComfyUI 0\.8\.0 cannot load it: its detector reads \[klein\] 4B .* as 48 heads", stdout, re.M)


def test_bad_device_choices_are_refused_with_the_fix():
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_gpu", "--device", "cpu"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "add --tiny" in done.stderr


def test_the_peak_is_the_benchmarks_own_not_its_parents():
    """A parent holding 1.5 GB resident starts a program that reports peak_rss_mib(): it is that program's own peak
    (torch imported: ~0.5 GB), not the parent's size, which getrusage's ru_maxrss carries across fork and exec."""
    code = ("import subprocess, sys\n"
            "big = bytearray(1536 * 2**20)\n"
            "for i in range(0, len(big), 4096): big[i] = 1\n"
            "child = 'import resource; from benchmarks.bench_gpu import peak_rss_mib as p; "
            "print(round(p()), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))'\n"
            "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True, check=True).stdout)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    own, inherited = map(int, done.stdout.split())
    assert inherited > 1536 and own < 1200, (own, inherited)
