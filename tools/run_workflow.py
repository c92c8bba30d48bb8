"""Run the VMDiff workflow (or any UI/API-format workflow) end to end on a real ComfyUI server.

    .venv/bin/python tools/run_workflow.py --tiny              # random-weight stand-in models, the shipped photos
    .venv/bin/python tools/run_workflow.py --models-dir ~/ComfyUI/models --image1 cat.png --label1 cat \\
        --image2 teapot.png --label2 teapot
    .venv/bin/python tools/run_workflow.py --server http://127.0.0.1:8188 --image1 a.png --label1 owl ...

Without --server it starts its own headless ComfyUI (tools/comfy_server.py) with this pack installed, writing its
results straight into --out with ComfyUI's own file counter (a run never overwrites an earlier result) and keeping
ComfyUI's log there. Everything that can be checked before the server starts is: the image files, the models folder
and the model files the workflow's loaders name. An image you give replaces the workflow's image of that number and
needs its label (--imageN with --labelN); without images the workflow's own (the pack's example photos) are used.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.comfy_server import ComfyClient, ComfyServer, ExecutionError, PromptError, stop_on_signals  # noqa: E402
from tools.workflow_convert import (UnknownNodeError, WorkflowError, as_api, expand_subgraphs,  # noqa: E402
                                    node_id_key)

DEFAULT_WORKFLOW = REPO_ROOT / "workflows" / "vmdiff_manual.json"
# --tiny is a smoke run on random weights at FLUX.1's full width on the CPU: keep it small (--set still wins).
TINY_OVERRIDES = {"VMDiffBlendingNoise": {"width": 64, "height": 64, "steps": 4, "t_den_step": 2},
                  "VMDiffMixingDenoise": {"steps": 4}}
LABELLED_TYPES = ("VMDiffFusionPrompt", "VMDiffScorer")  # nodes that take label_1 / label_2
# ComfyUI's model folder names and their legacy aliases (folder_paths)
FOLDER_ALIASES = {"diffusion_models": ("diffusion_models", "unet"), "text_encoders": ("text_encoders", "clip")}
TORCHAUDIO_NOTE = ("ComfyUI's 'IMPORT FAILED ... torchaudio' warnings are harmless: only its audio nodes need "
                   "torchaudio, which this pack does not use")


class UsageError(SystemExit):
    """A bad command line, found before any server starts: one line naming what is wrong and the fix."""

    def __init__(self, message: str):
        super().__init__(f"[run_workflow] error: {message}")


def synthetic_objects(folder: Path, size: int = 128) -> tuple[Path, Path]:
    """Two simple 'object' pictures on white: a red disc and a blue square with a yellow handle."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    a, b = Image.new("RGB", (size, size), "white"), Image.new("RGB", (size, size), "white")
    m = size // 5
    ImageDraw.Draw(a).ellipse([m, m, size - m, size - m], fill=(200, 30, 30), outline="black", width=2)
    draw = ImageDraw.Draw(b)
    draw.rectangle([m, m + m // 2, size - 2 * m, size - m], fill=(30, 60, 200), outline="black", width=2)
    draw.rectangle([size - 2 * m, 2 * m, size - m, 3 * m], fill=(230, 200, 20), outline="black", width=2)
    paths = folder / "object_1.png", folder / "object_2.png"
    a.save(paths[0])
    b.save(paths[1])
    return paths


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_inputs(api: dict, images: list[str | None], labels: list[str | None], sets: list[str],
                 class_overrides: dict | None = None) -> None:
    """Point the LoadImage nodes at the uploaded images, set the labels and the --set overrides (in place)."""
    for node in api.values():
        for name, value in (class_overrides or {}).get(node["class_type"], {}).items():
            if name in node["inputs"]:
                node["inputs"][name] = value
    loaders = sorted((k for k, v in api.items() if v["class_type"] == "LoadImage"), key=node_id_key)
    for i, name in enumerate(images):
        if name is not None:
            if i >= len(loaders):
                raise SystemExit(f"--image{i + 1} given but the workflow has {len(loaders)} LoadImage node(s)")
            api[loaders[i]]["inputs"]["image"] = name
    for i, label in enumerate(labels):  # the fusion prompt's labels, and the scorer's, name the same objects
        if label is None:
            continue
        name = f"label_{i + 1}"
        linked = [api[v[0]]["inputs"] for v in (n["inputs"].get(name) for n in api.values())
                  if isinstance(v, list) and api.get(v[0], {}).get("class_type") == "PrimitiveString"]
        typed = [n["inputs"] for n in api.values() if isinstance(n["inputs"].get(name), str)]
        if not (linked or typed):
            raise SystemExit(f"--label{i + 1} given but no node of the workflow takes {name}")
        for inputs in typed:
            inputs[name] = label
        for inputs in linked:  # a "Label N" primitive feeding the prompt and the scorer
            inputs["value"] = label
    for item in sets:
        target, _, value = item.partition("=")
        node_id, _, name = target.partition(".")
        if "=" not in item or node_id not in api or not name:
            raise SystemExit(f"bad --set {item!r}: use NODE_ID.input=value with a node id of the workflow")
        api[node_id]["inputs"][name] = parse_value(value)


# ---------------------------------------------------------------------------------------------- checks before start

def _strings(workflow: dict) -> set[str]:
    """Every string value a node holds (UI widgets_values or API inputs; nodes inside subgraphs too)."""
    nodes = expand_subgraphs(workflow)["nodes"] if "nodes" in workflow else workflow.values()
    values = []
    for node in nodes:
        raw = node.get("widgets_values", node.get("inputs", {}))
        values += list(raw.values()) if isinstance(raw, dict) else list(raw or [])
    return {v for v in values if isinstance(v, str)}


def _node_types(workflow: dict) -> set[str]:
    return {n["type"] for n in expand_subgraphs(workflow)["nodes"]} if "nodes" in workflow else \
        {n.get("class_type") for n in workflow.values()}


def missing_models(workflow: dict, models_dir: Path) -> list[str]:
    """'folder/file (download: url)' for each model file the workflow's loaders name that models_dir lacks (the
    files listed in tools/build_workflows.MODEL_DOWNLOADS; a file found anywhere below its folder counts)."""
    from tools.build_workflows import MODEL_DOWNLOADS

    missing = []
    for name in sorted(_strings(workflow) & set(MODEL_DOWNLOADS)):
        folder, url = MODEL_DOWNLOADS[name]
        folders = [models_dir / f for f in FOLDER_ALIASES.get(folder, (folder,))]
        if not any(f.is_dir() and next(f.rglob(name), None) for f in folders):
            missing.append(f"{folder}/{name} (download: {url})")
    return missing


def check_args(args, workflow: dict) -> None:
    """Everything that can be wrong before a server starts, each as one line naming it and the fix."""
    from PIL import Image, UnidentifiedImageError

    labelled = bool(_node_types(workflow) & set(LABELLED_TYPES))
    for i in (1, 2):
        image, label = getattr(args, f"image{i}"), getattr(args, f"label{i}")
        if image is not None:
            if not image.is_file():
                raise UsageError(f"--image{i} {image}: no such file; give the path of an image file")
            try:
                with Image.open(image) as im:
                    im.verify()
            except (UnidentifiedImageError, OSError) as exc:
                raise UsageError(f"--image{i} {image}: not an image Pillow can read ({exc}); give a PNG/JPEG file")
            if labelled and label is None:
                raise UsageError(f"--image{i} {image} given without --label{i}: the workflow's own label names its "
                                 f"own image; add --label{i} WHAT_IT_SHOWS (e.g. --label{i} teapot)")
        elif label is not None and labelled:
            raise UsageError(f"--label{i} {label!r} given without --image{i}: it would rename the workflow's own "
                             f"image {i}; add --image{i} PATH (the picture of a {label})")
    if args.server:
        return
    from tools.build_workflows import MODEL_DOWNLOADS

    needs_models = _strings(workflow) & set(MODEL_DOWNLOADS) or any(
        "Load" in t and t != "LoadImage" for t in _node_types(workflow))
    if args.models_dir is None and not args.tiny and needs_models:
        raise UsageError("no models: give --models-dir PATH (your ComfyUI models folder, with diffusion_models/, "
                         "vae/, ...) or --tiny (random-weight stand-ins, a smoke run)")
    if args.models_dir is not None:
        if not args.models_dir.is_dir():
            raise UsageError(f"--models-dir {args.models_dir}: no such folder; give your ComfyUI models folder "
                             f"(e.g. ~/ComfyUI/models) or use --tiny")
        missing = missing_models(workflow, args.models_dir)
        if missing:
            raise UsageError(f"{len(missing)} model file(s) missing in {args.models_dir}: {'; '.join(missing)}; "
                             f"put them there (see the README's Install table) or use --tiny")


# ---------------------------------------------------------------------------------------------------------- running

def upload_name(path: Path) -> str:
    """Uploads are named by content: two runs on one server never swap each other's pictures."""
    return f"vmdiff_upload_{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}{path.suffix.lower() or '.png'}"


def unique_path(path: Path) -> Path:
    """path, or path with _2, _3 ... before the suffix: never a file that already exists."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


def run(args, client: ComfyClient, local_output: Path | None = None) -> list[Path]:
    """Queue the workflow and wait; returns the output images (under local_output when the server writes there,
    else downloaded into --out under names that never replace an existing file)."""
    api = as_api(json.loads(args.workflow.read_text()), client.object_info())
    images = [args.image1, args.image2]
    names = [client.upload_image(p, upload_name(p)) if p else None for p in images]
    apply_inputs(api, names, [args.label1, args.label2], args.set, TINY_OVERRIDES if args.tiny else None)
    t0 = time.monotonic()
    entry = client.run(api, timeout=args.timeout)
    print(f"[run_workflow] workflow ran in {time.monotonic() - t0:.1f} s")
    for node_id, out in entry.get("outputs", {}).items():
        for text in out.get("text", []):
            print(f"[run_workflow] node {node_id} text: {text}")
    if local_output is not None:
        return [local_output / ref.get("subfolder", "") / ref["filename"] for ref in client.image_refs(entry)]
    paths = []
    for ref in client.image_refs(entry):
        data = client.get("/view", params={k: ref.get(k, "") for k in ("filename", "subfolder", "type")}).content
        path = unique_path(args.out / ref["filename"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def write_tiny_models() -> Path:
    """The stand-in model files (tools/tiny_models.py, cached in .cache/tiny_models), written in a child process;
    its ComfyUI import noise is kept out of the way unless it fails."""
    from tools.tiny_models import default_tiny_models_dir

    code = "from tools.tiny_models import default_tiny_models_dir as d, write_real_loader_models as w; w(d())"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"[run_workflow] error: writing the tiny stand-in models failed (exit {res.returncode})")
    return Path(default_tiny_models_dir())


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Run the VMDiff workflow on a real ComfyUI server (its own, or --server).",
        formatter_class=type("Formatter", (argparse.RawDescriptionHelpFormatter,
                                           argparse.ArgumentDefaultsHelpFormatter), {}),
        epilog="Examples:\n  .venv/bin/python tools/run_workflow.py --tiny\n"
               "  .venv/bin/python tools/run_workflow.py --models-dir ~/ComfyUI/models "
               "--image1 cat.png --label1 cat --image2 teapot.png --label2 teapot")
    ap.add_argument("--tiny", action="store_true",
                    help="use generated random-weight stand-in models (a smoke run; 64x64, 4 steps)")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="your ComfyUI models folder (diffusion_models/, text_encoders/, clip_vision/, "
                         "style_models/, vae/, ...); needed unless --tiny or --server")
    ap.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW, help="UI- or API-format workflow JSON")
    for i in (1, 2):
        ap.add_argument(f"--image{i}", type=Path, default=None,
                        help=f"image of object {i} for the workflow's LoadImage node {i} (default: the workflow's "
                             f"own, the pack's example photo); needs --label{i}")
        ap.add_argument(f"--label{i}", default=None,
                        help=f"what image {i} shows, a few words (goes to every label_{i} of the workflow: Fusion "
                             f"Prompt, Scorer); needs --image{i}")
    ap.add_argument("--server", default=None,
                    help="URL of a running ComfyUI that has this pack and its models (then no server is started)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "output",
                    help="results folder: own server writes here with ComfyUI's counter (name_00001_.png, ...), "
                         "never overwriting; its log is kept here as comfyui-<time>.log")
    ap.add_argument("--set", action="append", default=[], metavar="NODE_ID.input=value",
                    help="override an input (value parsed as JSON, else taken as a string); repeatable")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the workflow")
    return ap


def main(argv=None) -> int:
    from vmdiff_comfy.console import make_console_safe

    make_console_safe()  # node texts carry Greek (ε_b, α, σ): escaped on a console that cannot show them
    ap = build_parser()
    args = ap.parse_args(argv)
    stop_on_signals()
    if args.server and (args.tiny or args.models_dir):
        ap.error("--server uses that server's models: drop --tiny/--models-dir")
    if not args.workflow.is_file():
        raise UsageError(f"--workflow {args.workflow}: no such file; give a workflow JSON (e.g. workflows/*.json)")
    workflow = json.loads(args.workflow.read_text())
    try:
        check_args(args, workflow)
    except WorkflowError as exc:  # e.g. a subgraph node without its definition
        raise UsageError(f"--workflow {args.workflow}: {exc}") from None
    t_start = time.monotonic()

    models_dir = args.models_dir
    if args.tiny:
        t0 = time.monotonic()
        models_dir = write_tiny_models()
        print(f"[run_workflow] tiny stand-in models in {models_dir} ({time.monotonic() - t0:.1f} s)")
    if not (args.image1 or args.image2):
        print("[run_workflow] images and labels: the workflow's own (the pack's example photos)")

    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        if args.server:
            paths = run(args, ComfyClient(args.server))
        else:
            srv = ComfyServer(models_dir, extra_args=["--output-directory", str(args.out)])
            log_copy = unique_path(args.out / f"comfyui-{time.strftime('%Y%m%d-%H%M%S')}.log")
            try:
                with srv:
                    print(f"[run_workflow] ComfyUI started in {srv.startup_seconds:.1f} s at {srv.url}")
                    try:
                        paths = run(args, srv, local_output=args.out)
                    except (PromptError, ExecutionError):
                        print("[run_workflow] server log tail:\n" + srv.log_tail(40), file=sys.stderr)
                        raise
                    finally:
                        shutil.copyfile(srv.log_path, log_copy)
            finally:
                if log_copy.exists():
                    print(f"[run_workflow] ComfyUI log: {log_copy} ({TORCHAUDIO_NOTE})")
    except (PromptError, ExecutionError) as exc:
        print(f"[run_workflow] FAILED: {exc}", file=sys.stderr)
        return 1
    except (UnknownNodeError, WorkflowError) as exc:  # the workflow does not fit this server: one line, no traceback
        print(f"[run_workflow] FAILED: {args.workflow}: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(f"[run_workflow] output: {p}")
    print(f"[run_workflow] {len(paths)} image(s) in {time.monotonic() - t_start:.1f} s total")
    return 0 if paths else 1


if __name__ == "__main__":
    sys.exit(main())
