"""tools/folder_runner.py: every ordered pair of a folder of object images fused through real ComfyUI servers
(tiny stand-in models, smallest size), resumed after a kill without redoing finished pairs, split over two servers."""
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tools.comfy_server import ComfyServer
from tools.folder_runner import (METHOD_WORKFLOWS, SMALL_OVERRIDES, FolderRun, find_objects, pair_units,
                                 read_scores, sanitize_name)
from tools.run_workflow import DEFAULT_WORKFLOW, synthetic_objects

REPO = Path(__file__).resolve().parents[1]


def object_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    disc, mug = synthetic_objects(folder / "src", size=48)
    Image.open(disc).save(folder / "red1disc.png")
    Image.open(mug).save(folder / "blue2mug.png")
    tree = Image.new("RGB", (48, 48), "white")
    ImageDraw.Draw(tree).polygon([(24, 4), (44, 44), (4, 44)], fill=(30, 160, 40))
    tree.save(folder / "tree.png")
    return folder


def test_labels_and_pairs(tmp_path):
    assert sanitize_name("astronaut2figurine") == "astronaut figurine"
    assert sanitize_name("red1disc") == "reddisc" and sanitize_name(" a22b ") == "a b"
    objects = find_objects(object_folder(tmp_path / "objs"), labels="sanitize")
    assert [o["label"] for o in objects] == ["blue mug", "reddisc", "tree"]
    ordered = [p for unit in pair_units(objects) for p in unit]
    assert sorted(ordered) == [(i, j) for i in range(3) for j in range(3) if i != j]


def test_scores_are_read_from_the_probes_of_auto_tune_and_similarity_score():
    log = {"params": {"alpha": 0.47, "beta_1": 0.5, "beta_2": 1.2, "seed": 42, "preset": "official"},
           "final_terms": {"score": 2.1, "D1": 0.6, "D2": 0.5, "n1": 0.4, "n2": 0.6}, "candidates": []}
    entry = {"outputs": {"30": {"text": [json.dumps(log)]}, "31": {"text": ["not json"]},
                         "32": {"text": [json.dumps([{"score": 1.5, "T1": 0.3}])]}}}
    params, terms = read_scores(entry, {"30": ("20", "log"), "31": ("20", "params"), "32": ("21", "scores_json")})
    assert params == {"alpha": 0.47, "beta_1": 0.5, "beta_2": 1.2, "seed": 42}
    assert terms == {"score": 1.5, "D1": 0.6, "D2": 0.5, "n1": 0.4, "n2": 0.6, "T1": 0.3}


def snapshot(records: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in records.glob("*.json")}


@pytest.mark.slow
def test_folder_runner_resumes_after_a_kill_and_splits_over_two_servers(vmdiff_server, real_models_dir, tmp_path):
    folder, out = object_folder(tmp_path / "objs"), tmp_path / "fused"
    records = out / "records"
    # 1. a run on one server, killed as soon as its first pair is done
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "folder_runner.py"), str(folder), "--out", str(out),
                             "--server", vmdiff_server.url, "--small", "--labels", "sanitize"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while not list(records.glob("*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    before = snapshot(records)
    assert 1 <= len(before) < 6

    # 2. resumed over two servers: the finished pairs are skipped, the others are shared
    t0 = time.monotonic()
    with ComfyServer(real_models_dir) as second:
        run = FolderRun(find_objects(folder, "sanitize"), out, json.loads(DEFAULT_WORKFLOW.read_text()),
                        overrides=SMALL_OVERRIDES, timeout=600)
        assert sum(len(u) for u in run.todo()) == 6 - len(before)
        assert run.run([vmdiff_server.url, second.url]) == 0
    print(f"\n[folder_runner] killed after {len(before)} pair(s); the other {6 - len(before)} on two servers in "
          f"{time.monotonic() - t0:.0f} s")
    after = snapshot(records)
    assert len(after) == 6 and all(after[name] == before[name] for name in before)  # not redone
    new = [json.loads(after[name][0]) for name in after if name not in before]
    assert {r["server"] for r in new} == {vmdiff_server.url, second.url}
    assert run.todo() == []

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert sorted(r["pair"] for r in rows) == sorted(n[:-5] for n in after)
    for row in rows:
        assert (float(row["alpha"]), float(row["beta_1"]), float(row["beta_2"]), int(row["seed"])) == (0.5, 1, 1, 42)
        image = Image.open(out / "images" / row["outputs"].split(";")[0])
        assert image.size == (32, 32)
    by_pair = {r["pair"]: r for r in rows}
    assert (by_pair["red1disc__tree"]["label_1"], by_pair["red1disc__tree"]["label_2"]) == ("reddisc", "tree")
    assert len(json.loads((out / "results.json").read_text())) == 6


@pytest.mark.slow
def test_magicmix_method_fuses_every_ordered_pair(vmdiff_server, tmp_path):
    folder = object_folder(tmp_path / "objs")
    (folder / "tree.png").unlink()
    workflow = METHOD_WORKFLOWS["magicmix"]
    run = FolderRun(find_objects(folder), tmp_path / "fused", json.loads(workflow.read_text()),
                    overrides=SMALL_OVERRIDES, timeout=600, workflow_name=workflow.name)
    assert run.run([vmdiff_server.url]) == 0
    records = {r["pair"]: r for r in run.records()}
    assert sorted(records) == ["blue2mug__red1disc", "red1disc__blue2mug"]
    pixels = {}
    for name, r in records.items():
        assert r["workflow"] == "vmdiff_magicmix_flux.json"
        assert (r["nu"], r["k_min"], r["k_max"], r["seed"]) == (0.5, 0.3, 0.6, 42) and "alpha" not in r
        (image,) = r["outputs"]
        pixels[name] = np.asarray(Image.open(run.out / "images" / image).convert("RGB"), dtype=np.float32)
        assert pixels[name].shape == (48, 48, 3) and pixels[name].std() > 0  # the layout image sets the size
    # layout and content swap roles between the two orders of a pair
    assert np.abs(pixels["blue2mug__red1disc"] - pixels["red1disc__blue2mug"]).max() > 0
    rows = list(csv.DictReader(open(run.out / "results.csv")))
    assert {r["nu"] for r in rows} == {"0.5"} and {r["workflow"] for r in rows} == {"vmdiff_magicmix_flux.json"}
