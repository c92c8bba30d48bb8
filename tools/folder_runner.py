"""Fuse every ordered pair of a folder of object images through ComfyUI servers
(the reference's ``run.py --input_dir``).

    python tools/folder_runner.py objects/ --tiny                                  # own server, stand-in models
    python tools/folder_runner.py objects/ --models-dir ~/ComfyUI/models --out fused/
    python tools/folder_runner.py objects/ --server http://gpu0:8188 --server http://gpu1:8188   # share the pairs

The file names are the labels (``owl.png`` → "owl"; ``--labels sanitize`` applies the reference's sanitize_name:
'2' → space, '1' deleted). Each ordered pair (i, j), i ≠ j, runs the workflow of ``--method`` (``vmdiff``: the
manual one; ``magicmix``: MagicMix on Flux, image i's layout with image j's Redux content) or ``--workflow`` (any
UI/API workflow with two LoadImage nodes, e.g. workflows/vmdiff_full.json with Auto-Tune) with image i as object 1.
The two orders of a pair go to the same server one after the other, so its cache reuses both Redux encodes; with
several ``--server`` URLs each server takes the next pair from a shared queue.

Written to ``--out``: ``images/<obj1>__<obj2>_*.png``, ``records/<obj1>__<obj2>.json`` (written last: a pair with a
record is done and skipped when the runner is started again), and ``results.csv`` / ``results.json`` with α, β1, β2,
seed and every score term the workflow reports: the STRING outputs of the VMDiff nodes (Auto-Tune's params/log,
Similarity Score's scores_json) are read back through core ``PreviewAny`` nodes the runner adds; a workflow with
fixed α/β (the manual one) or MagicMix (ν, K_min, K_max) reports the values of its widgets.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.comfy_server import ComfyClient, ComfyServer  # noqa: E402
from tools.run_workflow import DEFAULT_WORKFLOW, apply_inputs  # noqa: E402
from tools.workflow_convert import as_api  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# widget values that name a fused image's parameters in a workflow without Auto-Tune: (class, input) -> column
WIDGET_PARAMS = {("VMDiffMixingDenoise", "alpha"): "alpha", ("VMDiffBlendingNoise", "beta_1"): "beta_1",
                 ("VMDiffBlendingNoise", "beta_2"): "beta_2", ("VMDiffBlendingNoise", "seed"): "seed",
                 ("VMDiffAutoTune", "seed"): "seed", ("VMDiffMagicMix", "seed"): "seed",
                 ("VMDiffMagicMix", "nu"): "nu", ("VMDiffMagicMix", "k_min"): "k_min",
                 ("VMDiffMagicMix", "k_max"): "k_max"}
#: --method: the shipped workflow each method runs on a pair
METHOD_WORKFLOWS = {"vmdiff": DEFAULT_WORKFLOW, "magicmix": REPO_ROOT / "workflows" / "vmdiff_magicmix_flux.json"}
FIRST_COLUMNS = ["pair", "workflow", "label_1", "label_2", "image_1", "image_2", "alpha", "beta_1", "beta_2", "seed",
                 "score"]
LAST_COLUMNS = ["outputs", "server", "seconds", "prompt_id"]
#: --small: the smallest run of the manual / baseline graphs (smoke tests of the runner on stand-in models)
SMALL_OVERRIDES = {"VMDiffBlendingNoise": {"width": 32, "height": 32, "steps": 2, "t_den_step": 0},
                   "VMDiffMixingDenoise": {"steps": 2}, "VMDiffMagicMix": {"width": 32, "height": 32, "steps": 4}}


def sanitize_name(name: str) -> str:
    """The reference's label from a file name: every '2' becomes a space, every '1' is deleted, whitespace collapsed
    (``astronaut2figurine`` → "astronaut figurine")."""
    return " ".join(name.replace("2", " ").replace("1", "").split())


def find_objects(folder: Path, labels: str = "stem") -> list[dict]:
    """The object images of a folder, sorted by file name, each with its label."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) < 2:
        raise SystemExit(f"{folder}: needs at least two images ({', '.join(IMAGE_SUFFIXES)}), found {len(files)}")
    label = sanitize_name if labels == "sanitize" else (lambda s: s)
    return [{"path": p, "stem": p.stem, "label": label(p.stem)} for p in files]


def pair_units(objects: list[dict]) -> list[list[tuple[int, int]]]:
    """Every ordered pair (i, j), i ≠ j, grouped as [(i, j), (j, i)] units: a unit runs on one server in a row."""
    n = len(objects)
    return [[(i, j), (j, i)] for i in range(n) for j in range(i + 1, n)]


def pair_id(objects: list[dict], i: int, j: int) -> str:
    safe = lambda s: re.sub(r"[^\w.-]+", "_", s)  # noqa: E731
    return f"{safe(objects[i]['stem'])}__{safe(objects[j]['stem'])}"


def add_string_probes(api: dict, object_info: dict) -> dict:
    """Add a core PreviewAny on every STRING output of the VMDiff nodes, so their JSON comes back in /history.
    Returns {probe node id: (source node id, output name)}."""
    probes, next_id = {}, max(int(k) for k in api if str(k).isdigit()) + 1
    for node_id, node in list(api.items()):
        info = object_info.get(node["class_type"], {})
        if not node["class_type"].startswith("VMDiff"):
            continue
        for slot, (kind, name) in enumerate(zip(info.get("output", []), info.get("output_name", []))):
            if kind == "STRING":
                api[str(next_id)] = {"class_type": "PreviewAny", "inputs": {"source": [node_id, slot]},
                                     "_meta": {"title": f"folder_runner probe of {node_id}.{name}"}}
                probes[str(next_id)] = (node_id, name)
                next_id += 1
    return probes


def _numbers(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_scores(entry: dict, probes: dict) -> tuple[dict, dict]:
    """(params, terms) from the probes' texts: Auto-Tune's params and log (final_terms), Similarity Score's
    scores_json (first image)."""
    params, terms = {}, {}
    for probe_id in probes:
        for text in entry.get("outputs", {}).get(probe_id, {}).get("text", []):
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, TypeError):
                continue
            if isinstance(value, dict) and isinstance(value.get("final_terms"), dict):
                terms.update(_numbers(value["final_terms"]))
                params.update(_numbers(value.get("params", {})))
            elif isinstance(value, dict) and "alpha" in value:
                params.update(_numbers(value))
            elif isinstance(value, list) and value and isinstance(value[0], dict) and "score" in value[0]:
                terms.update(_numbers(value[0]))
    return params, terms


def widget_params(api: dict) -> dict:
    out = {}
    for node in api.values():
        for (class_type, name), column in WIDGET_PARAMS.items():
            value = node["inputs"].get(name) if node["class_type"] == class_type else None
            if isinstance(value, (int, float)):
                out[column] = value
    return out


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


class FolderRun:
    """The pairs of one folder, their outputs and records; ``run(urls)`` fuses what is not done yet."""

    def __init__(self, objects: list[dict], out: Path, workflow: dict, sets: list[str] = (),
                 overrides: dict | None = None, timeout: float = 3600, log=print, workflow_name: str = ""):
        self.objects, self.out, self.workflow, self.workflow_name = objects, Path(out), workflow, workflow_name
        self.sets, self.overrides, self.timeout, self.log = list(sets), overrides, timeout, log
        for sub in ("images", "records"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.failures: list[str] = []

    def record_path(self, i: int, j: int) -> Path:
        return self.out / "records" / f"{pair_id(self.objects, i, j)}.json"

    def todo(self) -> list[list[tuple[int, int]]]:
        units = [[p for p in unit if not self.record_path(*p).exists()] for unit in pair_units(self.objects)]
        return [u for u in units if u]

    def run(self, urls: list[str]) -> int:
        """Fuse the pairs without a record over the servers at ``urls``; returns the number of failed pairs."""
        from tqdm import tqdm

        total = len(self.objects) * (len(self.objects) - 1)
        units = queue.Queue()
        for unit in self.todo():
            units.put(unit)
        remaining = sum(len(u) for u in units.queue)
        self.log(f"[folder_runner] {len(self.objects)} images, {total} ordered pairs, {total - remaining} done, "
                 f"{remaining} to run on {len(urls)} server(s)")
        bar = tqdm(total=total, initial=total - remaining, unit="pair", file=sys.stderr, dynamic_ncols=True)
        threads = [threading.Thread(target=self._worker, args=(url, units, bar), daemon=True) for url in urls]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        bar.close()
        self.write_results()
        return len(self.failures)

    def _worker(self, url: str, units: queue.Queue, bar) -> None:
        client = ComfyClient(url)
        try:
            info = client.object_info()
            template = as_api(self.workflow, info)  # each worker adds its probes to its own copy
            probes = add_string_probes(template, info)
        except Exception as error:  # a server that cannot be reached leaves its share to the others
            self.log(f"[folder_runner] {url}: {error}")
            return
        uploaded: dict[int, str] = {}
        while True:
            try:
                unit = units.get_nowait()
            except queue.Empty:
                return
            for i, j in unit:
                try:
                    for k in (i, j):
                        if k not in uploaded:
                            path = self.objects[k]["path"]
                            uploaded[k] = client.upload_image(path, f"vmdiff_folder_{path.name}")
                    self._run_pair(client, template, probes, uploaded, i, j)
                except Exception as error:
                    with self.lock:
                        self.failures.append(pair_id(self.objects, i, j))
                    self.log(f"[folder_runner] {pair_id(self.objects, i, j)} on {url} failed: {error}")
                bar.update(1)

    def _run_pair(self, client: ComfyClient, template: dict, probes: dict, uploaded: dict, i: int, j: int) -> None:
        a, b = self.objects[i], self.objects[j]
        api = copy.deepcopy(template)
        apply_inputs(api, [uploaded[i], uploaded[j]], [a["label"], b["label"]], self.sets, self.overrides)
        t0 = time.monotonic()
        entry = client.run(api, timeout=self.timeout)
        seconds = time.monotonic() - t0
        name = pair_id(self.objects, i, j)
        saved = []
        for k, src in enumerate(client.download_images(entry, self.out / "images" / f".{name}.partial")):
            dest = self.out / "images" / f"{name}_{k}{src.suffix}"
            os.replace(src, dest)
            saved.append(dest.name)
        (self.out / "images" / f".{name}.partial").rmdir()
        params, terms = read_scores(entry, probes)
        record = {"pair": name, "workflow": self.workflow_name, "label_1": a["label"], "label_2": b["label"],
                  "image_1": a["path"].name,
                  "image_2": b["path"].name, **widget_params(api), **params, **terms, "outputs": saved,
                  "server": client.url, "seconds": round(seconds, 2), "prompt_id": entry.get("prompt", [None, None])[1]}
        write_json_atomic(self.record_path(i, j), record)

    def records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.out / "records").glob("*.json"))]

    def write_results(self) -> None:
        """results.json and results.csv from every record (so a resumed run reports all pairs)."""
        records = self.records()
        write_json_atomic(self.out / "results.json", records)
        extra = sorted({k for r in records for k in r} - set(FIRST_COLUMNS) - set(LAST_COLUMNS))
        columns = FIRST_COLUMNS + extra + LAST_COLUMNS
        with open(self.out / "results.csv.tmp", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in records:
                writer.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in r.items()})
        os.replace(self.out / "results.csv.tmp", self.out / "results.csv")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fuse every ordered pair of a folder of object images on ComfyUI.")
    ap.add_argument("input_dir", type=Path, help="folder of object images; file names are the labels")
    ap.add_argument("--out", type=Path, help="output folder (default: <input_dir>_fused)")
    ap.add_argument("--method", choices=sorted(METHOD_WORKFLOWS), default="vmdiff",
                    help="vmdiff: workflows/vmdiff_manual.json; magicmix: workflows/vmdiff_magicmix_flux.json "
                         "(image 1's layout, image 2's Redux content)")
    ap.add_argument("--workflow", type=Path, help="UI- or API-format workflow JSON (instead of --method's)")
    ap.add_argument("--server", action="append", default=[], metavar="URL",
                    help="a running ComfyUI with this pack; repeat to share the pairs between servers")
    ap.add_argument("--models-dir", type=Path, help="start a ComfyUI on this models folder (no --server)")
    ap.add_argument("--tiny", action="store_true", help="start a ComfyUI on the generated stand-in models")
    ap.add_argument("--labels", choices=["stem", "sanitize"], default="stem",
                    help="label = file name without extension, or the reference's sanitize_name of it")
    ap.add_argument("--small", action="store_true", help="smallest size and steps (smoke runs on stand-in models)")
    ap.add_argument("--set", action="append", default=[], metavar="NODE_ID.input=value",
                    help="override an input of the workflow (value parsed as JSON); repeatable")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one pair")
    args = ap.parse_args(argv)
    if args.server and (args.tiny or args.models_dir):
        ap.error("--server uses that server's models: drop --tiny/--models-dir")
    objects = find_objects(args.input_dir, args.labels)
    workflow_path = args.workflow or METHOD_WORKFLOWS[args.method]
    workflow = json.loads(workflow_path.read_text())
    overrides = dict(SMALL_OVERRIDES) if args.small or args.tiny else None
    if args.tiny:  # the stand-in scorer files have their own names (tools/tiny_scorers.py)
        from tools.tiny_scorers import TINY_SCORER_NAMES as names

        overrides.update({
            "VMDiffLoadDINOv2": {"dinov2": names["dinov2"]},
            "VMDiffLoadOpenCLIP": {"model_name": names["open_clip_model"], "checkpoint": names["open_clip"]},
            "VMDiffLoadGroundingDINO": {"config": names["grounding_dino_config"], "checkpoint": names["grounding_dino"],
                                        "bert": names["bert"]},
            "VMDiffLoadSAM": {"checkpoint": names["sam"]}, "VMDiffScorer": {"detect_size": 224}})
    run = FolderRun(objects, args.out or args.input_dir.with_name(args.input_dir.name + "_fused"), workflow,
                    args.set, overrides, args.timeout, workflow_name=workflow_path.name)
    if args.server:
        failures = run.run(args.server)
    else:
        models_dir = args.models_dir
        if args.tiny:
            from tools.tiny_models import write_real_loader_models_in_child

            models_dir = write_real_loader_models_in_child(scorers=True)
        # an LRU cache keeps every image's Redux encoding (and the loaded models) across all the pairs
        with ComfyServer(models_dir, extra_args=["--cache-lru", str(4 * len(objects) + 32)]) as server:
            print(f"[folder_runner] ComfyUI started at {server.url} (log: {server.log_path})")
            failures = run.run([server.url])
    print(f"[folder_runner] {len(run.records())} pair(s) done, {failures} failed; results in {run.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
