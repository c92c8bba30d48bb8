"""The folder runner on a local Ray instance with 2 actors, each owning a cheap tiny-loader ComfyUI server.
Every ordered pair of a 3-image folder ends with exactly one record and the same pixels as a single-server run, even
when one actor's server is killed mid-run, or the actor itself."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from PIL import Image

from tests.server.test_folder_runner import alive
from tests.support.tiny_folders import TEST_NODES, folder_of, tiny_workflow
from vmdiff_cli.folder_ray import ray_env, require_ray, run_on_ray
from vmdiff_cli.folder_runner import MANIFEST, SMALL_OVERRIDES, FolderRun, find_objects

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_command_line_fails_only_pairs_that_truly_fail_and_resumes_without_ray(tmp_path):
    """`folder_runner.py --ray` as a user types it (its own local Ray, 2 actors): the 4 pairs of a label that
    overflows the CLIP window fail on every try and are named, the exit is non-zero, the 2 good pairs have their
    record; run again without that image, nothing is left to run, so neither Ray nor a server starts and it exits 0.
    First in this file: no Ray instance of the other tests is running yet."""
    long_label = "猫头鹰" * 13 + "罐"  # 40 Chinese characters: ~110 CLIP tokens (over CLIP's 77-token window)
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png", f"{long_label}.png"])
    workflow = tiny_workflow(tmp_path / "tiny.json")
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "vmdiff_cli" / "folder_runner.py"), str(folder), "--ray", "--actors", "2",
               "--retries", "1", "--small", "--custom-nodes", str(TEST_NODES), "--workflow", str(workflow),
               "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 1, log
    assert "6 ordered pairs, 0 done, 6 to run on 2 Ray actor(s)" in log, log
    assert sorted(p.stem for p in (out / "records").glob("*.json")) == ["jar__owl", "owl__jar"], log
    bad_pairs = [f"owl__{long_label}", f"{long_label}__owl", f"jar__{long_label}", f"{long_label}__jar"]
    for pair in bad_pairs:
        assert f"retrying {pair} (1/1)" in log, (pair, log)
        assert f"missing {pair}: on actor" in log and "after 1 retries" in log, (pair, log)
    assert "label_1" in log or "label_2" in log, log  # the reason names the label input that overflows
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]  # each bad pair: one run and one retry, then failed
    assert (summary["retried"], summary["failed"], summary["done"], summary["missing"]) == (4, 4, 2, 4), summary
    assert sum(w.get("retried", 0) for w in summary["workers"].values()) == 4, summary
    assert len(results["pairs"]) == 2, results

    (folder / f"{long_label}.png").unlink()
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all 2 ordered pairs" in again.stdout and "nothing to run" in again.stdout, again.stdout
    assert "Ray actor" not in again.stdout + again.stderr


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, runtime_env=ray_env(), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    folder = folder_of(root / "objs", ["owl.png", "jar.png", "cup.png"])
    workflow = json.loads(tiny_workflow(root / "tiny.json", seconds_per_call=0.3).read_text())
    return folder, workflow


def pixels(run: FolderRun) -> dict:
    return {r["pair"]: [np.asarray(Image.open(run.out / "images" / name)) for name in r["outputs"]]
            for r in run.records()}


@pytest.fixture(scope="module")
def single_server(comfy_server, setup, tmp_path_factory):
    folder, workflow = setup
    run = FolderRun(find_objects(folder), tmp_path_factory.mktemp("single") / "out", workflow,
                    overrides=SMALL_OVERRIDES, timeout=600)
    assert run.run([comfy_server.url]) == 0
    return pixels(run)


# (no fault-free case: each case below asserts all it would, every pair once and the single server's pixels)
@pytest.mark.parametrize("fault", ["kill a server", "kill an actor"])
def test_every_pair_once_and_the_same_images_despite_a_fault(local_ray, setup, single_server, tmp_path, fault):
    folder, workflow = setup
    run = FolderRun(find_objects(folder), tmp_path / "out", workflow, overrides=SMALL_OVERRIDES, timeout=600)
    killed = {}

    def after_store(stored, handles, infos, k):
        """After the first pair, kill what serves its actor's next pair (the other order, already queued on it)."""
        if stored == 1 and not killed:
            killed.update(infos[k], actor=f"actor {k + 1}")
            if fault == "kill a server":
                os.kill(infos[k]["server_pid"], signal.SIGKILL)
            else:
                ray.kill(handles[k], no_restart=False)  # Ray restarts the actor; its old server must not survive

    t0 = time.monotonic()
    summary = run_on_ray(run, actors=2, custom_nodes=[TEST_NODES], retries=2, after_store=after_store)
    print(f"\n[ray] fault {fault!r}: {json.dumps(summary)} in {time.monotonic() - t0:.0f} s")
    assert run.missing() == [] and run.report() == 0
    records = sorted((run.out / "records").glob("*.json"))
    assert len(records) == 6 == summary["done"] == len(json.loads((run.out / "results.json").read_text())["pairs"])
    written = (run.out / MANIFEST).read_text().splitlines()
    assert sum(line.startswith("records/") for line in set(written)) == 6  # one record file a pair, no strays
    assert len(list((run.out / "images").glob("*.png"))) == 6
    got = pixels(run)
    assert got.keys() == single_server.keys()
    for pair, images in single_server.items():
        assert all(np.array_equal(a, b) for a, b in zip(got[pair], images)), pair
    assert set(summary["workers"]) == {"actor 1", "actor 2"}
    assert summary["workers"]["actor 1"]["pairs"] + summary["workers"]["actor 2"]["pairs"] == 6
    # the pair in flight was retried, or the actor found its server dead and replaced it before running it
    urls = {json.loads(p.read_text())["server"] for p in records
            if json.loads(p.read_text())["worker"] == killed["actor"]}
    assert summary["retried"] >= 1 or urls - {killed["url"]}, (summary, urls, killed)
    deadline = time.monotonic() + 30
    while alive(killed["server_pid"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(killed["server_pid"])


def test_require_ray_names_the_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(SystemExit, match=r"--ray needs the optional package 'ray' \(pip install"):
        require_ray()
