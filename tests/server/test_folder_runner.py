"""vmdiff_cli/folder_runner.py: every ordered pair of a folder of object images fused through real ComfyUI servers
(tiny stand-in models, smallest size), resumed after a kill without redoing finished pairs, split over two servers;
nothing lost or swapped (results of one pair never written as another's): colliding labels refused by name, pair ids
unique per pair of files, no foreign file overwritten, record count == pair count or a non-zero exit naming the missing
pairs, content-named uploads, a worker's failure fails the run, SIGTERM/SIGINT/SIGKILL stop the runner's own server."""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vmdiff_cli.comfy_server import ComfyClient, ComfyServer, free_port
from vmdiff_cli.folder_runner import (MANIFEST, METHOD_WORKFLOWS, SMALL_OVERRIDES, FolderRun, RunnerError, find_objects,
                                 pair_id, pair_units, read_scores, sanitize_name, upload_name)
from vmdiff_cli.run_workflow import synthetic_objects
from tests.support.tiny_folders import TEST_NODES, TINY_LOADERS, folder_of, picture, tiny_workflow  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


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
def test_folder_runner_resumes_after_a_kill_and_splits_over_two_servers(comfy_server, tmp_path):
    folder, out = object_folder(tmp_path / "objs"), tmp_path / "fused"
    workflow = tiny_workflow(tmp_path / "tiny.json")
    records = out / "records"
    # 1. a run on one server, killed as soon as its first pair is done
    proc = subprocess.Popen([sys.executable, str(REPO / "vmdiff_cli" / "folder_runner.py"), str(folder),
                             "--out", str(out),
                             "--server", comfy_server.url, "--small", "--labels", "sanitize", "--workflow",
                             str(workflow)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
    with ComfyServer(None, [TEST_NODES]) as second:
        run = FolderRun(find_objects(folder, "sanitize"), out, json.loads(workflow.read_text()),
                        overrides=SMALL_OVERRIDES, timeout=600)
        assert sum(len(u) for u in run.todo()) == 6 - len(before)
        assert run.run([comfy_server.url, second.url]) == 0
    print(f"\n[folder_runner] killed after {len(before)} pair(s); the other {6 - len(before)} on two servers in "
          f"{time.monotonic() - t0:.0f} s")
    after = snapshot(records)
    assert len(after) == 6 and all(after[name] == before[name] for name in before)  # not redone
    new = [json.loads(after[name][0]) for name in after if name not in before]
    assert {r["server"] for r in new} == {comfy_server.url, second.url}
    assert run.todo() == []

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert sorted(r["pair"] for r in rows) == sorted(n[:-5] for n in after)
    for row in rows:
        assert (float(row["alpha"]), float(row["beta_1"]), float(row["beta_2"]), int(row["seed"])) == (0.5, 1, 1, 42)
        image = Image.open(out / "images" / row["outputs"].split(";")[0])
        assert image.size == (32, 32)
    by_pair = {r["pair"]: r for r in rows}
    assert (by_pair["red1disc__tree"]["label_1"], by_pair["red1disc__tree"]["label_2"]) == ("reddisc", "tree")
    assert len(json.loads((out / "results.json").read_text())["pairs"]) == 6


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


# --- nothing lost, nothing swapped --------------------------------------------------------------------------------
def runner(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "vmdiff_cli" / "folder_runner.py"), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("names, labels, clash", [
    (["owl.png", "owl.jpg", "jar.png", "cup.png"], "stem", "owl.jpg and owl.png give the same label 'owl'"),
    (["Owl.png", "owl.webp", "jar.png"], "stem", "Owl.png and owl.webp give the same label 'Owl'"),
    (["red1disc.png", "reddisc.png", "jar.png"], "sanitize", "red1disc.png and reddisc.png give the same label "
                                                            "'reddisc' (the label is --labels sanitize)"),
    (["a2b.png", "a b.png", "jar.png"], "sanitize", "a b.png and a2b.png give the same label 'a b'"),
    (["1.png", "jar.png"], "sanitize", "1.png gives an empty label"),
])
def test_colliding_labels_are_refused_by_name_before_any_work(tmp_path, names, labels, clash):
    folder = folder_of(tmp_path / "objs", names)
    with pytest.raises(RunnerError, match="nothing was run") as info:
        find_objects(folder, labels)
    assert clash in str(info.value)
    # the command refuses before it contacts any server or writes anything
    done = runner(folder, "--server", f"http://127.0.0.1:{free_port()}", "--labels", labels,
                  "--out", tmp_path / "out", timeout=60)
    assert done.returncode == 2 and clash in done.stderr and not (tmp_path / "out").exists()  # a refusal: 2


def test_pair_ids_are_unique_per_pair_of_files(tmp_path):
    names = ["a b.png", "a_b.png", "a__b.png", "x_.png", "_x.png", "owl.png", "b.png", "a.png", "b__c.png",
             "a__b__c.png"]
    objects = find_objects(folder_of(tmp_path / "objs", names))
    ids = [pair_id(objects, i, j) for unit in pair_units(objects) for i, j in unit]
    assert len(ids) == len(set(ids)) == len(set(i.casefold() for i in ids)) == 10 * 9
    for unit in pair_units(objects):
        for i, j in unit:  # the id splits back into its two files' keys, so no two pairs can share it
            assert pair_id(objects, i, j).split("__") == [objects[i]["key"], objects[j]["key"]]
    keys = {o["path"].name: o["key"] for o in objects}
    assert keys["owl.png"] == "owl" and keys["b.png"] == "b" and keys["a b.png"].startswith("a_b-")


def fake_result(tag: str) -> dict:
    """What fuse_pair returns for a pair (stored without a server, to test the output folder's rules)."""
    return {"fields": {"alpha": 0.5, "server": "none", "seconds": 0.0, "prompt_id": tag},
            "images": [(".png", f"image of {tag}".encode())]}


def test_resume_reruns_exactly_what_is_missing_and_never_overwrites_foreign_files(tmp_path):
    objects = find_objects(folder_of(tmp_path / "objs", ["owl.png", "jar.png", "cup.png"]))
    out = tmp_path / "fused"
    (out / "images").mkdir(parents=True)
    user_file = out / "images" / "owl__jar_0.png"
    user_file.write_bytes(b"the user's own picture")
    run = FolderRun(objects, out, {})
    assert len(run.pairs) == 6 and len(run.missing()) == 6
    for i, j in run.pairs:
        run.store(i, j, fake_result(pair_id(objects, i, j)))
    assert run.missing() == [] and run.report() == 0 and len(run.records()) == 6
    assert user_file.read_bytes() == b"the user's own picture"  # not overwritten: the pair's image went beside it
    owl_jar = json.loads((out / "records" / "owl__jar.json").read_text())
    assert owl_jar["outputs"] == ["owl__jar_0-2.png"] and (out / "images" / "owl__jar_0-2.png").exists()

    # a lost image, a corrupt record and a record of other files: exactly those pairs are run again
    (out / "images" / "cup__owl_0.png").unlink()
    (out / "records" / "jar__cup.json").write_text("{not json")
    swapped = json.loads((out / "records" / "owl__cup.json").read_text())
    (out / "records" / "owl__cup.json").write_text(json.dumps({**swapped, "image_2": "jar.png"}))
    again = FolderRun(find_objects(tmp_path / "objs"), out, {})
    assert sorted(again.missing()) == ["cup__owl", "jar__cup", "owl__cup"]
    assert sorted(len(u) for u in again.todo()) == [1, 2]  # owl×cup both ways in one unit, jar×cup one way
    assert again.report() == 1
    for name in again.missing():
        i, j = (next(k for k, o in enumerate(objects) if o["key"] == key) for key in name.split("__"))
        again.store(i, j, fake_result(name))
    assert again.missing() == [] and again.report() == 0
    again.write_results()
    assert len(json.loads((out / "results.json").read_text())["pairs"]) == 6


@pytest.mark.parametrize("foreign", ["results.csv", "results.json", "records/owl__jar.json"])
def test_an_output_folder_with_files_the_runner_did_not_write_is_refused(tmp_path, foreign):
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    out = tmp_path / "fused"
    (out / foreign).parent.mkdir(parents=True, exist_ok=True)
    (out / foreign).write_text("the user's")
    with pytest.raises(RunnerError, match=f"holds {foreign}, which this runner did not write here.*another --out"):
        FolderRun(find_objects(folder), out, {})
    assert (out / foreign).read_text() == "the user's"
    (out / MANIFEST).write_text(foreign + "\n")  # the runner's own file is fine
    FolderRun(find_objects(folder), out, {})


def test_uploads_are_named_by_content(tmp_path):
    a = picture(tmp_path / "one" / "owl.png", (200, 30, 30))
    b = picture(tmp_path / "two" / "owl.png", (30, 60, 200))
    c = picture(tmp_path / "three" / "other.png", (200, 30, 30))
    assert upload_name(a) != upload_name(b) and upload_name(a).endswith(".png")
    assert upload_name(a) == upload_name(Path(c))  # same bytes, same name: sharing it is harmless


@pytest.mark.slow
def test_files_with_one_stem_are_all_fused_and_counted(comfy_server, tmp_path):
    """owl.png and owl_.png (keys collide as file names, labels differ) and jar.png: 6 ordered pairs, 6 records, 6
    rows, exit 0; the pairs never overwrite each other."""
    folder = folder_of(tmp_path / "objs", ["owl.png", "owl_.png", "jar.png"])
    done = runner(folder, "--server", comfy_server.url, "--small", "--out", tmp_path / "out",
                  "--workflow", tiny_workflow(tmp_path / "tiny.json"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "6 of 6 pair(s) done, 0 missing" in done.stdout
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json")]
    assert len(records) == 6 and len({(r["image_1"], r["image_2"]) for r in records}) == 6
    assert {(r["label_1"], r["label_2"]) for r in records} >= {("owl", "owl_"), ("owl_", "owl")}
    images = [name for r in records for name in r["outputs"]]
    assert len(images) == len(set(images)) == 6 and all((tmp_path / "out" / "images" / n).exists() for n in images)
    assert len(list(csv.DictReader(open(tmp_path / "out" / "results.csv")))) == 6


@pytest.mark.slow
def test_two_runs_on_one_server_with_the_same_file_names_keep_their_own_pictures(comfy_server, tmp_path):
    runs = []
    for k, colours in enumerate([((200, 30, 30), (30, 60, 200)), ((30, 160, 40), (230, 200, 20))]):
        folder = tmp_path / f"objs{k}"
        for name, colour in zip(["owl.png", "jar.png"], colours):
            picture(folder / name, colour)
        workflow = json.loads(tiny_workflow(tmp_path / "tiny.json").read_text())
        runs.append(FolderRun(find_objects(folder), tmp_path / f"out{k}", workflow, overrides=SMALL_OVERRIDES,
                              timeout=600))
    threads = [threading.Thread(target=r.run, args=([comfy_server.url],)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    client = ComfyClient(comfy_server.url)
    for run in runs:
        assert run.missing() == []
        for record in run.records():
            prompt = client.get(f"/history/{record['prompt_id']}").json()[record["prompt_id"]]["prompt"][2]
            loaded = [n["inputs"]["image"] for _, n in sorted(prompt.items(), key=lambda kv: int(kv[0]))
                      if n["class_type"] == "LoadImage"]
            files = [run.objects[0]["path"].parent / record[k] for k in ("image_1", "image_2")]
            assert loaded == [upload_name(f) for f in files]
            for name, f in zip(loaded, files):  # the server's input file is this run's picture
                assert client.get("/view", params={"filename": name, "type": "input"}).content == f.read_bytes()


@pytest.mark.slow
def test_a_workflow_without_label_inputs_fails_the_run_with_the_reason(comfy_server, tmp_path):
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    done = runner(folder, "--server", comfy_server.url, "--workflow", REPO / "workflows" / "core_two_redux.json",
                  "--out", tmp_path / "out")
    assert done.returncode == 1
    assert "core_two_redux.json: no node takes label_1 or label_2" in done.stdout
    assert "0 of 2 pair(s) done, 2 missing" in done.stdout and not list((tmp_path / "out" / "records").glob("*"))


def test_an_unreachable_server_fails_the_run_naming_it(tmp_path):
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    url = f"http://127.0.0.1:{free_port()}"
    done = runner(folder, "--server", url, "--out", tmp_path / "out", timeout=120)
    assert done.returncode == 1 and f"worker failed: {url}:" in done.stdout
    assert "missing owl__jar: not run" in done.stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.parametrize("sig,sigint_at_launch", [(signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.SIG_IGN),
                                                   (signal.SIGKILL, signal.SIG_DFL)],
                         ids=["SIGTERM", "SIGINT-ignored-at-launch", "SIGKILL"])
def test_a_signal_that_stops_the_runner_stops_its_server(tmp_path, sig, sigint_at_launch):
    """SIG_IGN at launch: what a runner started in the background by a script (`cmd &`) inherits; CI once ran the
    suite that way and the runner finished its pairs as if Ctrl-C had never come."""
    folder = folder_of(tmp_path / "objs", ["owl.png", "jar.png"])
    proc = subprocess.Popen([sys.executable, str(REPO / "vmdiff_cli" / "folder_runner.py"), str(folder), "--small",
                             "--custom-nodes", str(TEST_NODES), "--out", str(tmp_path / "out"),
                             "--workflow", str(tiny_workflow(tmp_path / "tiny.json", seconds_per_call=1.0))], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint_at_launch))
    line = ""
    while "ComfyUI started" not in line:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "the runner ended before its server started"
    server_pid = int(line.split("(pid ")[1].split(",")[0])
    assert alive(server_pid)
    proc.send_signal(sig)
    assert proc.wait(60) != 0
    deadline = time.monotonic() + 30  # SIGKILL: ComfyServer's watchdog notices within 0.5 s and sends SIGTERM
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(server_pid), f"ComfyUI (pid {server_pid}) outlived the runner stopped by {sig.name}"
