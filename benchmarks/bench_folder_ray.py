"""Pairs per minute of the folder runner on Ray, 1 actor vs 2 actors, side by side in one run.

    python -m benchmarks.bench_folder_ray                      # 4 images → 12 ordered pairs, 0.5 s per DiT call
    python -m benchmarks.bench_folder_ray --images 3 --seconds-per-call 0.3

Each actor owns a cheap test server (tests/custom_nodes tiny loaders: ComfyUI's real classes built tiny); the tiny
DiT sleeps ``--seconds-per-call`` per call, standing in for a GPU's time, so the ratio shows how the dispatcher
scales when the work is on devices rather than on this machine's 2 shared CPU cores. The rate counts from the
moment every actor's server answers (server start-up is reported apart). Absolute numbers mean little here.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from tests.support.tiny_folders import TEST_NODES, folder_of, tiny_workflow  # noqa: E402
from vmdiff_cli.folder_ray import ray_env, require_ray, run_on_ray  # noqa: E402
from vmdiff_cli.folder_runner import SMALL_OVERRIDES, FolderRun, find_objects  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--seconds-per-call", type=float, default=0.5)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    ray = require_ray()
    ray.init(num_cpus=max(args.actors), runtime_env=ray_env(), include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = [f"object{k}.png" for k in range(args.images)]
        folder = folder_of(root / "objs", names)
        workflow = json.loads(tiny_workflow(root / "tiny.json", seconds_per_call=args.seconds_per_call).read_text())
        for actors in args.actors:
            run = FolderRun(find_objects(folder), root / f"out{actors}", workflow, overrides=SMALL_OVERRIDES,
                            timeout=600, log=lambda *a: None)
            t0 = time.monotonic()
            summary = run_on_ray(run, actors=actors, custom_nodes=[TEST_NODES])
            total = time.monotonic() - t0
            rows.append((actors, summary["done"], summary["wall_seconds"], total - summary["wall_seconds"],
                         60 * summary["done"] / summary["wall_seconds"]))
    ray.shutdown()
    print(f"\n{args.images} images → {rows[0][1]} ordered pairs, tiny DiT {args.seconds_per_call} s a call")
    print("| actors | pairs | dispatch s | start-up s | pairs/min | speed-up |")
    print("|---|---|---|---|---|---|")
    for actors, done, wall, startup, rate in rows:
        print(f"| {actors} | {done} | {wall:.1f} | {startup:.1f} | {rate:.1f} | {rate / rows[0][4]:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
