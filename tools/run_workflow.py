"""Run the VMDiff workflow (or any UI/API-format workflow) end to end on a real ComfyUI server.

    python tools/run_workflow.py --tiny                       # random-weight stand-in models, synthetic images
    python tools/run_workflow.py --models-dir ~/ComfyUI/models --image1 cat.png --image2 teapot.png \
        --label1 cat --label2 teapot
    python tools/run_workflow.py --server http://127.0.0.1:8188 --image1 a.png --image2 b.png

Without --server it starts its own headless ComfyUI (tools/comfy_server.py) with this pack installed. The UI
workflow is converted to the API format with tools/workflow_convert.py; the two images go to the LoadImage nodes
(lowest node id first), the labels to VMDiffFusionPrompt's label_1/label_2, and ``--set 12.steps=8`` overrides
any input. The output images are copied to --out and their paths printed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.comfy_server import ComfyClient, ComfyServer, ExecutionError, PromptError  # noqa: E402
from tools.workflow_convert import as_api  # noqa: E402

DEFAULT_WORKFLOW = REPO_ROOT / "workflows" / "vmdiff_manual.json"
# --tiny is a smoke run on random weights at FLUX.1's full width on the CPU: keep it small (--set still wins).
TINY_OVERRIDES = {"VMDiffBlendingNoise": {"width": 64, "height": 64, "steps": 4, "t_den_step": 2},
                  "VMDiffMixingDenoise": {"steps": 4}}


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
    loaders = sorted((k for k, v in api.items() if v["class_type"] == "LoadImage"), key=int)
    for i, name in enumerate(images):
        if name is not None:
            if i >= len(loaders):
                raise SystemExit(f"--image{i + 1} given but the workflow has {len(loaders)} LoadImage node(s)")
            api[loaders[i]]["inputs"]["image"] = name
    for i, label in enumerate(labels):  # the fusion prompt's labels, and the scorer's, name the same objects
        if label is not None:
            targets = [k for k, v in api.items() if isinstance(v["inputs"].get(f"label_{i + 1}"), str)]
            if not targets:
                raise SystemExit(f"--label{i + 1} given but no node of the workflow takes label_{i + 1}")
            for k in targets:
                api[k]["inputs"][f"label_{i + 1}"] = label
    for item in sets:
        target, _, value = item.partition("=")
        node_id, _, name = target.partition(".")
        if "=" not in item or node_id not in api or not name:
            raise SystemExit(f"bad --set {item!r}: use NODE_ID.input=value with a node id of the workflow")
        api[node_id]["inputs"][name] = parse_value(value)


def run(args, client: ComfyClient) -> list[Path]:
    workflow = json.loads(args.workflow.read_text())
    api = as_api(workflow, client.object_info())
    images = [args.image1, args.image2]
    names = [client.upload_image(p, f"vmdiff_input_{i + 1}{Path(p).suffix or '.png'}") if p else None
             for i, p in enumerate(images)]
    apply_inputs(api, names, [args.label1, args.label2], args.set, TINY_OVERRIDES if args.tiny else None)
    t0 = time.monotonic()
    entry = client.run(api, timeout=args.timeout)
    print(f"[run_workflow] workflow ran in {time.monotonic() - t0:.1f} s")
    for node_id, out in entry.get("outputs", {}).items():
        for text in out.get("text", []):
            print(f"[run_workflow] node {node_id} text: {text}")
    return client.download_images(entry, args.out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run the VMDiff workflow on a real ComfyUI server.")
    ap.add_argument("--tiny", action="store_true", help="use generated random-weight stand-in models (smoke run)")
    ap.add_argument("--workflow", type=Path, default=DEFAULT_WORKFLOW, help="UI- or API-format workflow JSON")
    ap.add_argument("--image1", type=Path)
    ap.add_argument("--image2", type=Path)
    ap.add_argument("--label1")
    ap.add_argument("--label2")
    ap.add_argument("--models-dir", type=Path, help="a ComfyUI models folder (diffusion_models, vae, ...)")
    ap.add_argument("--server", help="URL of a running ComfyUI that has this pack installed")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "output", help="where to copy the output images")
    ap.add_argument("--set", action="append", default=[], metavar="NODE_ID.input=value",
                    help="override an input (value parsed as JSON, else taken as a string); repeatable")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the workflow")
    args = ap.parse_args(argv)
    if args.server and (args.tiny or args.models_dir):
        ap.error("--server uses that server's models: drop --tiny/--models-dir")
    t_start = time.monotonic()

    models_dir = args.models_dir
    if args.tiny:
        from tools.tiny_models import write_real_loader_models_in_child

        t0 = time.monotonic()
        models_dir = write_real_loader_models_in_child(verbose=True)
        print(f"[run_workflow] tiny stand-in models in {models_dir} ({time.monotonic() - t0:.1f} s)")
        if not (args.image1 and args.image2):
            args.image1, args.image2 = synthetic_objects(args.out / "inputs")
            print(f"[run_workflow] synthetic inputs: {args.image1}, {args.image2}")

    try:
        if args.server:
            paths = run(args, ComfyClient(args.server))
        else:
            with ComfyServer(models_dir) as srv:
                print(f"[run_workflow] ComfyUI started in {srv.startup_seconds:.1f} s at {srv.url} "
                      f"(log: {srv.log_path})")
                try:
                    paths = run(args, srv)
                except (PromptError, ExecutionError):
                    print("[run_workflow] server log tail:\n" + srv.log_tail(40), file=sys.stderr)
                    raise
    except (PromptError, ExecutionError) as exc:
        print(f"[run_workflow] FAILED: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(f"[run_workflow] output: {p}")
    print(f"[run_workflow] {len(paths)} image(s) in {time.monotonic() - t_start:.1f} s total")
    return 0 if paths else 1


if __name__ == "__main__":
    sys.exit(main())
