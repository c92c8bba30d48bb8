"""The dependency rules: requirements.txt cannot break a ComfyUI install, and the pack imports and scores with
the original GroundingDINO / SAM packages absent."""
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import tomllib

from vmdiff_cli.comfy_env import REPO_ROOT

C_LOCALE = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
NEVER = {"opencv-python", "supervision", "pycocotools", "groundingdino-py", "segment-anything"}


def requirement_lines() -> list[str]:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_requirements_are_ranged_and_agree_with_pyproject():
    reqs = requirement_lines()
    assert reqs and not any("==" in r or "===" in r for r in reqs), reqs
    assert not any(r.split(">")[0].split("<")[0].strip().lower() in NEVER for r in reqs)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == reqs
    # the test-only list (what scripts/setup_env.sh installs for the tests) is ranged too, and holds the originals
    test = project["optional-dependencies"]["test"]
    assert not any("==" in r for r in test), test
    assert NEVER - {"opencv-python", "supervision", "pycocotools"} <= {r.split(">")[0].split("<")[0] for r in test}


def test_requirements_resolve_to_wheels_without_opencv_supervision_pycocotools(tmp_path):
    """pip resolves requirements.txt from scratch (every dependency, ComfyUI's included: --ignore-installed) under
    the C locale, wheels only (nothing built from an sdist), and the resolved set holds none of the heavy packages
    groundingdino-py used to pull."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--only-binary", ":all:", "--report", str(report), "-r", "requirements.txt"],
                          cwd=REPO_ROOT, env=C_LOCALE, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert "open-clip-torch" in names and "torch" in names
    assert not names & NEVER, names & NEVER


def test_requirements_install_into_a_throwaway_venv_under_the_c_locale(tmp_path):
    """A real `pip install -r requirements.txt` into a fresh venv that sees this environment's packages (torch is
    not downloaded again), under LC_ALL=C PYTHONUTF8=0: it succeeds and open_clip imports from there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "venv" / "lib").mkdir(exist_ok=True)
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "shared_env.pth"), "w") as f:  # the shared environment, read-only, after the venv's
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    target = tmp_path / "installed"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary", ":all:",
                           "--target", str(target), "-r", "requirements.txt"],
                          cwd=REPO_ROOT, env=C_LOCALE, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    check = subprocess.run([str(python), "-c", "import open_clip, sys; print(open_clip.__file__)"],
                           env=dict(C_LOCALE, PYTHONPATH=str(target)), capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip().startswith(str(target))


HIDDEN = textwrap.dedent("""
    import importlib.abc, sys
    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("groundingdino", "segment_anything"):
                raise ImportError(f"{name} is hidden by the test")
    sys.meta_path.insert(0, Hide())
    sys.path.insert(0, REPO_PATH)
    from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack
    boot_comfy_inprocess(); load_pack()
    import folder_paths, torch
    from vmdiff_cli.tiny_scorers import TINY_SCORER_NAMES as N, default_models_dir
    for kind in ("dinov2", "open_clip", "grounding-dino", "bert-base-uncased", "sams"):
        folder_paths.add_model_folder_path(kind, str(default_models_dir() / kind))
    from vmdiff_pack.vmdiff_comfy.scoring import clip, detection, dino, segmentation
    from vmdiff_pack.vmdiff_comfy.scoring.similarity import ScoreOptions, SimilarityScorer
    for checkpoint, bert, sam in ((N["grounding_dino_hf"], None, N["sam_hf"]),
                                  (N["grounding_dino"], N["bert"], N["sam"])):
        scorer = SimilarityScorer(dino.load_dinov2(N["dinov2"]),
                                  clip.load_open_clip(N["open_clip_model"], N["open_clip"]),
                                  detection.load_grounding_dino(N["grounding_dino_config"], checkpoint, bert),
                                  segmentation.load_sam(sam), torch.rand(1, 40, 48, 3), torch.rand(1, 48, 40, 3),
                                  "owl", "jar", ScoreOptions(isolation="sam", box_threshold=0.0, detect_short_side=64))
        print(scorer.score(torch.rand(2, 40, 40, 3))[0]["score"])
    print("hidden:", [m for m in sys.modules if m.split(".")[0] in ("groundingdino", "segment_anything")])
""")


def test_pack_imports_and_scores_without_groundingdino_and_segment_anything():
    from vmdiff_cli.tiny_scorers import default_models_dir, ensure_tiny_scorers

    ensure_tiny_scorers(default_models_dir())  # written by the original packages, in another process
    done = subprocess.run([sys.executable, "-c", HIDDEN.replace("REPO_PATH", repr(str(REPO_ROOT)))], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "hidden: []"
    assert all(re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", line) for line in lines[-3:-1]), lines[-3:]
