"""Fuse every ordered pair of a folder of object images through ComfyUI servers
(the reference's ``run.py --input_dir``).

    python tools/folder_runner.py objects/ --tiny                                  # own server, stand-in models
    python tools/folder_runner.py objects/ --models-dir ~/ComfyUI/models --out fused/
    python tools/folder_runner.py objects/ --server http://gpu0:8188 --server http://gpu1:8188   # share the pairs
    python tools/folder_runner.py objects/ --models-dir ~/ComfyUI/models --ray          # one actor per GPU (Ray)

The file names are the labels (``owl.png`` → "owl"; ``--labels sanitize`` applies the reference's sanitize_name:
'2' → space, '1' deleted). Each ordered pair (i, j), i ≠ j, runs the workflow of ``--method`` (``vmdiff``: the
manual one; ``magicmix``: MagicMix on Flux, image i's layout with image j's Redux content) or ``--workflow`` (any
UI/API workflow with two LoadImage nodes, e.g. workflows/vmdiff_full.json with Auto-Tune) with image i as object 1.
The two orders of a pair go to the same server one after the other, so its cache reuses both Redux encodes; with
several ``--server`` URLs each server takes the next pair from a shared queue.

Written to ``--out``: ``images/<obj1>__<obj2>_*.png``, ``records/<obj1>__<obj2>.json`` (written last: a pair with a
record whose images are all there is done and skipped when the runner is started again), ``results.csv`` (one row
a pair) and ``results.json`` (a summary: pairs done/failed/missing, seconds and DiT passes per pair, per worker; and
the records) with α, β1, β2, seed and every score term the workflow reports: the STRING outputs of the VMDiff
nodes (Auto-Tune's params/log, Similarity Score's scores_json) are read back through core ``PreviewAny`` nodes the runner adds; a workflow with
fixed α/β (the manual one) or MagicMix (ν, K_min, K_max) reports the values of its widgets.

Nothing is lost or swapped: two files with one label (``owl.png``, ``owl.jpg``) are refused before any work; a pair
id is unique per pair of files; the runner never overwrites a file it did not write in ``--out`` (it lists its own
in ``.folder_runner_files``); uploads are named by their content; the exit code is 0 only when every ordered pair
has its record, else the missing pairs are named with their reasons; SIGTERM, SIGHUP and Ctrl-C stop the ComfyUI
server the runner started.

Its own mistakes are caught before any server starts, each as one line with exit code 2: an input folder that is
missing, a file, unreadable or with fewer than two images; an image that does not decode fully (random bytes, a
truncated or empty file: the runner refuses the folder and names every such file, it never counts one as an
object; a valid image whose extension names another format is used, as ComfyUI reads it by content); an ``--out``
it cannot write. Each record is bound to the SHA-256 of its two input files and of the settings it ran (the
workflow, ``--set``, ``--small``/``--tiny``): a picture replaced under the same name, or other settings, re-run
that pair (its new record names the one it supersedes). The first write that cannot succeed (disk full, read-only,
no permission, file too large) stops the run cleanly: the pairs done keep their records, the message says how to
resume, and no ``.tmp`` file is left (stale ones of a killed run are removed when it is resumed).
"""
from __future__ import annotations

import argparse
import copy
import csv
import errno
import hashlib
import io
import json
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.comfy_server import ComfyClient, ComfyServer, stop_on_signals  # noqa: E402
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
LAST_COLUMNS = ["outputs", "server", "worker", "seconds", "prompt_id"]
#: --small: the smallest run of the manual / baseline graphs (smoke tests of the runner on stand-in models)
SMALL_OVERRIDES = {"VMDiffBlendingNoise": {"width": 32, "height": 32, "steps": 2, "t_den_step": 0},
                   "VMDiffMixingDenoise": {"steps": 2}, "VMDiffMagicMix": {"width": 32, "height": 32, "steps": 4}}


class RunnerError(SystemExit):
    """A refusal before any work, or a run that did not finish every pair: the message names what and the fix.
    The command prints it as one line and exits with code 2."""

    def __init__(self, message: str):
        super().__init__(f"[folder_runner] {message}")


#: errors of a write that will fail for every later file too: the run stops at the first one
FATAL_WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EDQUOT}


class WriteStopped(Exception):
    """A file of --out could not be written (disk full, read-only, no permission, too large): the run stops."""


def check_input_dir(folder: Path) -> Path:
    """The input folder resolved to an absolute path (so ``.`` works), or RunnerError naming the argument and the
    fix: missing, a file, or unreadable."""
    given = Path(folder)
    shown = f"input_dir {str(folder)!r}" + (f" ({given.resolve()})" if not given.is_absolute() else "")
    if given.is_file():
        raise RunnerError(f"{shown}: is a file, not a folder; give the folder that holds the object images "
                          f"(e.g. {given.resolve().parent}) — nothing was run")
    if not given.is_dir():
        raise RunnerError(f"{shown}: no such folder; give the folder that holds the object images "
                          f"(at least two .png/.jpg files) — nothing was run")
    try:
        next(iter(os.scandir(given)), None)
    except OSError as error:
        raise RunnerError(f"{shown}: cannot be read ({error.strerror}); give a folder you can read, or fix its "
                          f"permissions (e.g. chmod u+rx) — nothing was run") from None
    return given.resolve()


def image_problem(path: Path) -> Optional[str]:
    """Why an image file cannot be an object (None when it decodes fully): empty, unreadable, not an image, or
    truncated. Decodes every pixel (Pillow's load), since a truncated PNG or JPEG opens without error."""
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return "an empty file"
        with Image.open(path) as image:
            image.load()
    except OSError as error:  # UnidentifiedImageError, truncated data, permission denied, ...
        return (error.strerror or str(error)) if isinstance(error, PermissionError) else str(error)
    except Exception as error:  # noqa: BLE001 — a decoder's own error (e.g. SyntaxError for a broken header)
        return f"{type(error).__name__}: {error}"
    return None


def check_output_dir(out: Path) -> Path:
    """``--out`` created if needed and proven writable (a probe file written and removed) before any server starts,
    or RunnerError naming it and the fix."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise RunnerError(f"--out {out}: is a file, not a folder; give a folder for the results with --out PATH "
                          f"— nothing was run")
    probe = out / f".folder_runner_probe.{os.getpid()}.tmp"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as error:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        raise RunnerError(f"--out {out}: cannot write there ({error.strerror or error}); give a folder you can "
                          f"write with --out PATH — nothing was run") from None
    return out


def settings_hash(workflow: dict, sets: list[str], overrides: Optional[dict]) -> str:
    """SHA-256 of what a pair's prompt is made from besides its two images and labels: the workflow JSON, the
    --set values and the class overrides (--small, --tiny). A record made under other settings is stale."""
    text = json.dumps({"workflow": workflow, "set": list(sets), "overrides": overrides or {}}, sort_keys=True,
                      ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sanitize_name(name: str) -> str:
    """The reference's label from a file name: every '2' becomes a space, every '1' is deleted, whitespace collapsed
    (``astronaut2figurine`` → "astronaut figurine")."""
    return " ".join(name.replace("2", " ").replace("1", "").split())


def object_key(stem: str) -> str:
    """A file-system-safe key of a file stem with no '__' inside and none at its ends, so '<key1>__<key2>' names
    exactly one ordered pair."""
    return re.sub(r"_{2,}", "_", re.sub(r"[^\w.-]+", "_", stem)).strip("_") or "object"


def find_objects(folder: Path, labels: str = "stem") -> list[dict]:
    """The object images of a folder, sorted by file name, each with its label and a key unique per file.

    Two files whose labels collide (``owl.png`` and ``owl.jpg``: two objects, one label) are refused by name
    before any work; keys that collide only as file names (``a b.png``, ``a_b.png``) get a suffix from the name."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    broken = [(p.name, problem) for p in files if (problem := image_problem(p))]
    if broken:
        raise RunnerError(f"{folder}: {len(broken)} file(s) are not images that decode fully: "
                          f"{'; '.join(f'{name} ({why})' for name, why in broken)}; replace them with the right "
                          f"pictures or move them out of the folder — nothing was run")
    if len(files) < 2:
        raise RunnerError(f"{folder}: needs at least two images ({', '.join(IMAGE_SUFFIXES)}), found {len(files)}; "
                          f"put the object images in it (file names are the labels) — nothing was run")
    label = sanitize_name if labels == "sanitize" else (lambda s: s.strip())
    objects = [{"path": p, "stem": p.stem, "label": label(p.stem),
                "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files]
    by_label: dict[str, list[str]] = {}
    for o in objects:
        by_label.setdefault(o["label"].casefold(), []).append(o["path"].name)
    clashes = [names for names in by_label.values() if len(names) > 1]
    empty = [o["path"].name for o in objects if not o["label"]]
    if clashes or empty:
        rule = "--labels sanitize" if labels == "sanitize" else "the file name without its extension"
        problems = [f"{' and '.join(names)} give the same label {label(Path(names[0]).stem)!r}" for names in clashes]
        problems += [f"{name} gives an empty label" for name in empty]
        raise RunnerError(f"{folder}: {'; '.join(problems)} (the label is {rule}); rename the files so that each "
                          f"object has its own label, e.g. owl_glass.jpg — nothing was run")
    keys = [object_key(o["stem"]) for o in objects]
    folded = [k.casefold() for k in keys]  # records/Owl__x.json and records/owl__x.json are one file on macOS
    for o, key in zip(objects, keys):
        o["key"] = key if folded.count(key.casefold()) == 1 else \
            f"{key}-{hashlib.sha1(o['path'].name.encode()).hexdigest()[:8]}"
    return objects


def pair_units(objects: list[dict]) -> list[list[tuple[int, int]]]:
    """Every ordered pair (i, j), i ≠ j, grouped as [(i, j), (j, i)] units: a unit runs on one server in a row."""
    n = len(objects)
    return [[(i, j), (j, i)] for i in range(n) for j in range(i + 1, n)]


def pair_id(objects: list[dict], i: int, j: int) -> str:
    return f"{objects[i]['key']}__{objects[j]['key']}"


def add_string_probes(api: dict, object_info: dict) -> dict:
    """Add a core PreviewAny on every STRING output of the VMDiff nodes, so their JSON comes back in /history.
    Returns {probe node id: (source node id, output name)}."""
    probes, next_id = {}, max((int(k) for k in api if str(k).isdigit()), default=0) + 1
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


def upload_name(path: Path) -> str:
    """The input-folder name of an object image: its content's hash, so two runs on one server whose folders share
    file names never swap pictures (equal names mean equal bytes)."""
    return f"vmdiff_folder_{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]}{Path(path).suffix.lower()}"


@dataclass
class Prepared:
    """A workflow in API format for one server, with its probes: every pair's prompt is a copy of it."""

    api: dict
    probes: dict
    sets: list
    overrides: Optional[dict]


def prepare_workflow(workflow: dict, object_info: dict, sets: list[str] = (), overrides: dict | None = None,
                     name: str = "the workflow") -> Prepared:
    """The workflow converted for a server, checked once before any pair: two LoadImage nodes, nodes that take
    label_1 and label_2 (the file names), --set targets that exist. Raises RunnerError naming what is wrong."""
    api = as_api(workflow, object_info)
    probes = add_string_probes(api, object_info)
    loaders = [k for k, v in api.items() if v["class_type"] == "LoadImage"]
    if len(loaders) < 2:
        raise RunnerError(f"{name}: has {len(loaders)} LoadImage node(s); a pair needs two (image 1, image 2)")
    takes = {n: [k for k, v in api.items() if isinstance(v["inputs"].get(n), str)] for n in ("label_1", "label_2")}
    if not all(takes.values()):
        raise RunnerError(f"{name}: no node takes {' or '.join(n for n in takes if not takes[n])}, so the file "
                          f"names (the labels) could not reach the graph and every pair would keep the workflow's "
                          f"own prompt; use a workflow with VMDiff Fusion Prompt (e.g. --method vmdiff or "
                          f"workflows/vmdiff_full.json) — nothing was run")
    try:
        apply_inputs(copy.deepcopy(api), ["a.png", "b.png"], ["a", "b"], list(sets), overrides)
    except SystemExit as error:
        raise RunnerError(f"{name}: {error}") from None
    return Prepared(api, probes, list(sets), overrides)


def fuse_pair(client: ComfyClient, prepared: Prepared, first: dict, second: dict, uploaded: dict,
              timeout: float) -> dict:
    """Run one ordered pair on a server: upload both images (content-named, once per server), queue the prompt,
    fetch its images. Returns {"fields": the record's measured fields, "images": [(suffix, bytes)]}; writes nothing
    (the caller stores it), so it runs the same in a thread or in a Ray actor."""
    names = []
    for o in (first, second):
        if o["path"] not in uploaded:
            uploaded[o["path"]] = client.upload_image(o["path"], upload_name(o["path"]))
        names.append(uploaded[o["path"]])
    api = copy.deepcopy(prepared.api)
    apply_inputs(api, names, [first["label"], second["label"]], prepared.sets, prepared.overrides)
    t0 = time.monotonic()
    entry = client.run(api, timeout=timeout)
    seconds = time.monotonic() - t0
    images = []
    for ref in client.image_refs(entry):
        data = client.get("/view", params={k: ref.get(k, "") for k in ("filename", "subfolder", "type")}).content
        images.append((Path(ref["filename"]).suffix or ".png", data))
    params, terms = read_scores(entry, prepared.probes)
    fields = {**widget_params(api), **params, **terms, "server": client.url, "seconds": round(seconds, 2),
              "prompt_id": entry.get("prompt", [None, None])[1]}
    return {"fields": fields, "images": images}


MANIFEST = ".folder_runner_files"  # the output folder's files this runner wrote, one relative path a line


class FolderRun:
    """The pairs of one folder, their outputs and records. ``run(urls)`` fuses what is not done yet over running
    servers (threads); ``store`` writes a pair's images and record, never over a file the runner did not write.

    A pair is done when its record (written last) is one the runner wrote, names this pair, these files with this
    content (SHA-256) and these labels, was made under these settings (``settings_hash``), and every image it lists
    is there; anything else is run again (a resume re-runs exactly what is missing or stale). The first write that
    cannot succeed sets ``stopped`` and raises WriteStopped: the workers stop taking pairs."""

    def __init__(self, objects: list[dict], out: Path, workflow: dict, sets: list[str] = (),
                 overrides: dict | None = None, timeout: float = 3600, log=print, workflow_name: str = ""):
        self.objects, self.out, self.workflow, self.workflow_name = objects, Path(out), workflow, workflow_name
        self.sets, self.overrides, self.timeout, self.log = list(sets), overrides, timeout, log
        self.settings_sha256 = settings_hash(workflow, self.sets, overrides)
        try:
            for sub in ("images", "records"):
                (self.out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunnerError(f"--out {self.out}: cannot write there ({error.strerror or error}); give a folder you "
                              f"can write with --out PATH — nothing was run") from None
        self.lock = threading.Lock()
        self.failures: dict[str, str] = {}  # pair id → reason of its last failure
        self.worker_errors: list[str] = []
        self.stopped: Optional[str] = None  # why the run stopped at a write that cannot succeed
        self.pairs = [p for unit in pair_units(objects) for p in unit]
        self._check_output_folder()
        self._remove_stale_tmp()

    # --- the output folder -------------------------------------------------------------------------------------
    def _written(self) -> set[str]:
        path = self.out / MANIFEST
        return set(path.read_text().splitlines()) if path.exists() else set()

    def _claim(self, path: Path) -> None:
        """Note a file as the runner's before it is put in place."""
        with open(self.out / MANIFEST, "a") as f:
            f.write(f"{path.relative_to(self.out).as_posix()}\n")

    def _check_output_folder(self) -> None:
        """Refuse, before any work, an output folder whose records or results this runner did not write."""
        written = self._written()
        candidates = [self.out / "results.json", self.out / "results.csv"]
        candidates += [self.record_path(i, j) for i, j in self.pairs]
        foreign = [p.relative_to(self.out).as_posix() for p in candidates
                   if p.exists() and p.relative_to(self.out).as_posix() not in written]
        if foreign:
            raise RunnerError(f"{self.out}: holds {', '.join(foreign[:5])}{' …' if len(foreign) > 5 else ''}, "
                              f"which this runner did not write here; it never overwrites such files: choose "
                              f"another --out (or move them away) — nothing was run")

    def _remove_stale_tmp(self) -> None:
        """Remove the half-written ``.<name>.<pid>.<thread>.tmp`` files of runs that are gone (killed, or stopped by
        a full disk before this cleanup existed); a running process's files are left alone."""
        removed = []
        for folder in (self.out, self.out / "images", self.out / "records"):
            for tmp in folder.glob(".*.tmp"):
                parts = tmp.name.split(".")
                pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
                if pid is None or pid == os.getpid() or _pid_alive(pid):
                    continue
                try:
                    tmp.unlink()
                    removed.append(tmp.relative_to(self.out).as_posix())
                except OSError:
                    pass
        if removed:
            self.log(f"[folder_runner] removed {len(removed)} unfinished file(s) of an earlier run: "
                     f"{', '.join(removed[:5])}{' …' if len(removed) > 5 else ''}")

    def _write(self, path: Path, data: bytes) -> None:
        """Write a file of --out atomically (temporary file, claimed in the manifest, renamed). A write that cannot
        succeed removes its temporary file, sets ``stopped`` and raises WriteStopped."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(data)
            self._claim(path)
            os.replace(tmp, path)
        except OSError as error:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if error.errno not in FATAL_WRITE_ERRORS:
                raise
            reason = f"writing {path.relative_to(self.out).as_posix()} in {self.out} failed: " \
                     f"{error.strerror or error} ({errno.errorcode.get(error.errno, error.errno)})"
            if self.stopped is None:
                self.stopped = reason
            raise WriteStopped(reason) from None

    def _free_image_path(self, name: str, suffix: str, written: set[str]) -> Path:
        """images/<name><suffix>, or <name>-2<suffix>, … if a file the runner did not write has that name."""
        for n in range(1, 10_000):
            path = self.out / "images" / f"{name}{'' if n == 1 else f'-{n}'}{suffix}"
            if not path.exists() or path.relative_to(self.out).as_posix() in written:
                return path
        raise RunnerError(f"{self.out / 'images'}: no free name for {name}{suffix}")

    def pair_name(self, i: int, j: int) -> str:
        return pair_id(self.objects, i, j)

    def record_path(self, i: int, j: int) -> Path:
        return self.out / "records" / f"{pair_id(self.objects, i, j)}.json"

    def done(self, i: int, j: int, written: set[str] | None = None) -> bool:
        return self.stale_reason(i, j, written) is None

    def _record(self, i: int, j: int, written: set[str]) -> Optional[dict]:
        path = self.record_path(i, j)
        if path.relative_to(self.out).as_posix() not in written or not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def stale_reason(self, i: int, j: int, written: set[str] | None = None) -> Optional[str]:
        """None when pair (i, j) is done; else why it runs (again): no record, other files, content or settings,
        or a lost image."""
        written = self._written() if written is None else written
        record = self._record(i, j, written)
        a, b = self.objects[i], self.objects[j]
        if record is None or record.get("pair") != pair_id(self.objects, i, j):
            return "no record"
        if (record.get("image_1"), record.get("image_2")) != (a["path"].name, b["path"].name):
            return "its record names other files"
        hashes = record.get("inputs_sha256")
        if not isinstance(hashes, list) or len(hashes) != 2:
            return "its record has no content hash of its images (made by an older runner)"
        changed = [o["path"].name for o, h in zip((a, b), hashes) if o.get("sha256") != h]
        if changed:
            return f"{' and '.join(changed)} changed since its record"
        if record.get("settings_sha256") != self.settings_sha256:
            return "the settings changed since its record (workflow, --set, --small/--tiny)"
        if (record.get("label_1"), record.get("label_2")) != (a["label"], b["label"]):
            return "its labels changed (--labels)"
        lost = [name for name in record.get("outputs", [])
                if f"images/{name}" not in written or not (self.out / "images" / name).exists()]
        if lost:
            return f"its image {lost[0]} is missing"
        return None

    def todo(self) -> list[list[tuple[int, int]]]:
        written = self._written()
        units = [[p for p in unit if not self.done(*p, written)] for unit in pair_units(self.objects)]
        return [u for u in units if u]

    def missing(self) -> list[str]:
        return [pair_id(self.objects, *p) for unit in self.todo() for p in unit]

    def store(self, i: int, j: int, result: dict) -> dict:
        """Write a pair's images, then its record (last: a pair with a record is done)."""
        a, b = self.objects[i], self.objects[j]
        name = pair_id(self.objects, i, j)
        with self.lock:
            written, saved = self._written(), []
            for k, (suffix, data) in enumerate(result["images"]):
                path = self._free_image_path(f"{name}_{k}", suffix, written)
                self._write(path, data)
                written.add(path.relative_to(self.out).as_posix())
                saved.append(path.name)
            old = self._record(i, j, written)
            record = {"pair": name, "workflow": self.workflow_name, "label_1": a["label"], "label_2": b["label"],
                      "image_1": a["path"].name, "image_2": b["path"].name, **result["fields"], "outputs": saved,
                      "inputs_sha256": [a.get("sha256"), b.get("sha256")], "settings_sha256": self.settings_sha256,
                      "set": list(self.sets)}
            if old is not None:  # a stale record (other content or settings) replaced: say which
                record["supersedes"] = {k: old.get(k) for k in ("prompt_id", "inputs_sha256", "settings_sha256",
                                                                "set", "outputs")}
            self._write(self.record_path(i, j), (json.dumps(record, indent=1) + "\n").encode())
            self.failures.pop(name, None)
        return record

    def fail(self, i: int, j: int, reason: str) -> None:
        with self.lock:
            self.failures[pair_id(self.objects, i, j)] = reason
        self.log(f"[folder_runner] {pair_id(self.objects, i, j)} failed: {reason}")

    # --- threads over running servers ----------------------------------------------------------------------------
    def run(self, urls: list[str]) -> int:
        """Fuse the pairs without a record over the servers at ``urls`` (each takes the next unit from a shared
        queue); returns the number of pairs still missing afterwards (failed, or left by a dead worker)."""
        from tqdm import tqdm

        todo = self.todo()
        units = queue.Queue()
        for unit in todo:
            units.put(unit)
        remaining = sum(len(u) for u in todo)
        total = len(self.pairs)
        self.log(f"[folder_runner] {len(self.objects)} images, {total} ordered pairs, {total - remaining} done, "
                 f"{remaining} to run on {len(urls)} server(s)")
        self.log_stale(todo)
        bar = tqdm(total=total, initial=total - remaining, unit="pair", file=sys.stderr, dynamic_ncols=True)
        threads = [threading.Thread(target=self._worker, args=(url, units, bar), daemon=True) for url in urls]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        bar.close()
        try:
            self.write_results()
        except WriteStopped:
            pass  # report() says so
        return len(self.missing())

    def log_stale(self, todo: list[list[tuple[int, int]]]) -> None:
        """Name the pairs that run again although they have a record (a changed picture or setting)."""
        written = self._written()
        reasons = [(self.pair_name(i, j), why) for unit in todo for i, j in unit
                   if (why := self.stale_reason(i, j, written)) != "no record"]
        for name, why in reasons[:20]:
            self.log(f"[folder_runner] {name} runs again: {why} (its new record supersedes the old one)")
        if len(reasons) > 20:
            self.log(f"[folder_runner] … and {len(reasons) - 20} more pairs run again")

    def _worker(self, url: str, units: queue.Queue, bar) -> None:
        try:
            client = ComfyClient(url)
            prepared = prepare_workflow(self.workflow, client.object_info(), self.sets, self.overrides,
                                        self.workflow_name or "the workflow")
        except BaseException as error:  # noqa: BLE001 — its share goes to the others; the run reports it
            with self.lock:
                self.worker_errors.append(f"{url}: {error}")
            self.log(f"[folder_runner] {url}: {error}")
            return
        uploaded: dict = {}
        while self.stopped is None:
            try:
                unit = units.get_nowait()
            except queue.Empty:
                return
            for i, j in unit:
                if self.stopped is not None:
                    return
                try:
                    self.store(i, j, fuse_pair(client, prepared, self.objects[i], self.objects[j], uploaded,
                                               self.timeout))
                except WriteStopped:
                    return  # the whole run stops: report() says what is done and how to resume
                except BaseException as error:  # noqa: BLE001 — one pair's failure is recorded, not fatal
                    self.fail(i, j, f"on {url}: {error}")
                bar.update(1)

    # --- results -------------------------------------------------------------------------------------------------
    def records(self) -> list[dict]:
        """The records of this folder's pairs that are done, in pair order."""
        written = self._written()
        return [json.loads(self.record_path(*p).read_text()) for unit in pair_units(self.objects) for p in unit
                if self.done(*p, written)]

    def summary(self, records: list[dict]) -> dict:
        """Pairs done, failed, missing; mean seconds (and DiT passes, where the workflow reports them) per pair,
        over all and per worker (a server URL, or a Ray actor)."""
        def means(rs: list[dict]) -> dict:
            dit = [r["dit_calls"] for r in rs if isinstance(r.get("dit_calls"), (int, float))]
            return {"pairs": len(rs), "mean_seconds": round(sum(r["seconds"] for r in rs) / len(rs), 2) if rs else None,
                    "mean_dit_passes": round(sum(dit) / len(dit), 1) if dit else None}
        by_worker: dict[str, list] = {}
        for r in records:
            by_worker.setdefault(r.get("worker") or r.get("server", "?"), []).append(r)
        return {"pairs": len(self.pairs), "done": len(records), "missing": len(self.pairs) - len(records),
                "failed": len(self.failures), **{k: v for k, v in means(records).items() if k != "pairs"},
                "workers": {name: means(rs) for name, rs in by_worker.items()}}

    def write_results(self, extra: dict | None = None) -> dict:
        """results.json ({"summary", "pairs": every done pair's record}) and results.csv (one row a pair), from all
        records (so a resumed run reports all pairs). Returns the summary."""
        records = self.records()
        summary = self.summary(records)
        for name, stats in (extra or {}).pop("workers", {}).items():
            summary["workers"].setdefault(name, {}).update(stats)
        summary.update(extra or {})
        self._write(self.out / "results.json", (json.dumps({"summary": summary, "pairs": records}, indent=1)
                                                + "\n").encode())
        extra_columns = sorted({k for r in records for k in r} - set(FIRST_COLUMNS) - set(LAST_COLUMNS))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIRST_COLUMNS + extra_columns + LAST_COLUMNS)
        writer.writeheader()
        for r in records:
            writer.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in r.items()})
        self._write(self.out / "results.csv", buffer.getvalue().encode())
        return summary

    def report(self) -> int:
        """Print what is done and what is missing (with the reasons); 0 only when every pair has its record."""
        missing = self.missing()
        done = len(self.pairs) - len(missing)
        self.log(f"[folder_runner] {done} of {len(self.pairs)} pair(s) done, {len(missing)} missing; results in "
                 f"{self.out}")
        if self.stopped:
            results = self.out / "results.json"
            self.log(f"[folder_runner] STOPPED: {self.stopped}. The {done} pair(s) done keep their records in "
                     f"{self.out / 'records'}"
                     f"{'' if results.exists() else ' (results.json could not be written)'}; free some space "
                     f"(or fix the permissions of --out, or choose another --out) and run the same command again: "
                     f"it runs only the {len(missing)} missing pair(s)")
        for name, stats in self.summary(self.records())["workers"].items():
            self.log(f"[folder_runner]   {name}: {stats['pairs']} pair(s), {stats['mean_seconds']} s a pair")
        for error in self.worker_errors:
            self.log(f"[folder_runner] worker failed: {error}")
        for name in missing[:20]:
            default = "not run (the run stopped)" if self.stopped else "not run (no worker took it)"
            self.log(f"[folder_runner] missing {name}: {self.failures.get(name, default)}")
        if len(missing) > 20:
            self.log(f"[folder_runner] … and {len(missing) - 20} more missing")
        return 1 if missing else 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def server_args(objects: list[dict]) -> list[str]:
    """An LRU cache that keeps every image's Redux encoding (and the loaded models) across all the pairs."""
    return ["--cache-lru", str(4 * len(objects) + 32)]


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
    ap.add_argument("--custom-nodes", action="append", type=Path, default=[], metavar="DIR",
                    help="another custom node folder for the server(s) the runner starts; repeatable")
    ap.add_argument("--labels", choices=["stem", "sanitize"], default="stem",
                    help="label = file name without extension, or the reference's sanitize_name of it")
    ap.add_argument("--small", action="store_true", help="smallest size and steps (smoke runs on stand-in models)")
    ap.add_argument("--set", action="append", default=[], metavar="NODE_ID.input=value",
                    help="override an input of the workflow (value parsed as JSON); repeatable")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one pair")
    ap.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="run on Ray: one actor per GPU (per CPU without GPUs) owning a ComfyUI server; no ADDRESS: "
                         "a local Ray instance; 'auto' or ray://HEAD:10001: a cluster (needs pip install ray)")
    ap.add_argument("--actors", type=int, default=0, help="--ray: number of actors (default: one per GPU/CPU)")
    ap.add_argument("--retries", type=int, default=2, help="--ray: runs of a failed pair after the first")
    args = ap.parse_args(argv)
    stop_on_signals()
    try:
        return _main(ap, args)
    except RunnerError as error:  # the runner's own refusals: one line, exit code 2, nothing started
        print(error.code, file=sys.stderr, flush=True)
        return 2


def read_workflow(path: Path, option: str) -> dict:
    """The workflow JSON at ``path``, or RunnerError naming ``option`` and the fix."""
    try:
        workflow = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunnerError(f"{option} {path}: no such file; give a workflow JSON (e.g. workflows/vmdiff_full.json)") \
            from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunnerError(f"{option} {path}: not a readable workflow JSON ({error}); give a workflow saved by "
                          f"ComfyUI (Save, or Export (API))") from None
    if not isinstance(workflow, dict):
        raise RunnerError(f"{option} {path}: not a workflow (a JSON object of nodes); give a workflow saved by "
                          f"ComfyUI")
    return workflow


def _main(ap: argparse.ArgumentParser, args) -> int:
    if args.server and (args.tiny or args.models_dir):
        ap.error("--server uses that server's models: drop --tiny/--models-dir")
    if args.server and args.ray:
        ap.error("--ray starts its own servers (one per actor): drop --server")
    if args.ray:
        from tools.folder_ray import require_ray

        require_ray()
    input_dir = check_input_dir(args.input_dir)
    objects = find_objects(input_dir, args.labels)
    workflow_path = args.workflow or METHOD_WORKFLOWS[args.method]
    workflow = read_workflow(workflow_path, "--workflow" if args.workflow else f"--method {args.method}:")
    out = check_output_dir(args.out or input_dir.with_name(input_dir.name + "_fused"))
    overrides = dict(SMALL_OVERRIDES) if args.small or args.tiny else None
    if args.tiny:  # the stand-in scorer files have their own names (tools/tiny_scorers.py)
        from tools.tiny_scorers import TINY_SCORER_NAMES as names

        overrides.update({
            "VMDiffLoadDINOv2": {"dinov2": names["dinov2"]},
            "VMDiffLoadOpenCLIP": {"model_name": names["open_clip_model"], "checkpoint": names["open_clip"]},
            "VMDiffLoadGroundingDINO": {"config": names["grounding_dino_config"], "checkpoint": names["grounding_dino"],
                                        "bert": names["bert"]},
            "VMDiffLoadSAM": {"checkpoint": names["sam"]}, "VMDiffScorer": {"detect_size": 224}})
    run = FolderRun(objects, out, workflow, args.set, overrides, args.timeout, workflow_name=workflow_path.name)
    if not run.todo():  # a resume with every record there: no server, no Ray, no model files to write
        print(f"[folder_runner] all {len(run.pairs)} ordered pairs of {args.input_dir} already have their record "
              f"in {run.out}: nothing to run", flush=True)
        try:
            run.write_results()
        except WriteStopped:
            pass  # report() says so
        return run.report()
    models_dir = args.models_dir
    if args.tiny and not args.server:
        from tools.tiny_models import write_real_loader_models_in_child

        models_dir = write_real_loader_models_in_child(scorers=True)
    if args.server:
        run.run(args.server)
    elif args.ray:
        from tools.folder_ray import run_on_ray

        summary = run_on_ray(run, None if args.ray == "local" else args.ray, args.actors, models_dir,
                             args.custom_nodes, server_args(objects), args.retries)
        print(f"[folder_runner] Ray: {summary['actors']} actor(s), {summary['retried']} retried, "
              f"{summary['wall_seconds']} s")
    else:
        with ComfyServer(models_dir, args.custom_nodes, extra_args=server_args(objects)) as server:
            print(f"[folder_runner] ComfyUI started at {server.url} (pid {server.pid}, log: {server.log_path})",
                  flush=True)
            run.run([server.url])
    return run.report()


if __name__ == "__main__":
    sys.exit(main())
