"""Benchmark: time to score a batch of fused images with VMDiff's Similarity Score on the tiny scorer files
(vmdiff_cli/tiny_scorers), how it scales with the batch size, and encoder-call counts proving encode-once.

    python -m benchmarks.bench_score [--sizes 1 2 4 8] [--modes none box sam] [--detect-size 800] [--image 512]

Models: tiny DINOv2 (hidden 32) and OpenCLIP (width 32), a tiny SAM (64 px), and groundingdino-py's SwinT-OGC with
its FULL Swin-T backbone (the library builds no smaller one) but a 1+2-layer transformer: detection time is close to
a real GroundingDINO-T's backbone cost; the DINO/CLIP/SAM times are not representative of the real models.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from vmdiff_cli.comfy_env import boot_comfy_inprocess, load_pack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--modes", nargs="+", default=["none", "box", "sam"])
    parser.add_argument("--detect-size", type=int, default=800, help="GroundingDINO short side (reference 800)")
    parser.add_argument("--image", type=int, default=512, help="fused/source image side (reference 512)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    boot_comfy_inprocess()
    load_pack()
    import folder_paths
    from vmdiff_cli import tiny_scorers
    from vmdiff_pack.vmdiff_comfy.scoring import clip, detection, dino, segmentation
    from vmdiff_pack.vmdiff_comfy.scoring.similarity import ScoreOptions, SimilarityScorer

    root = tiny_scorers.default_models_dir()
    names = tiny_scorers.ensure_tiny_scorers(root)
    for kind in ("dinov2", "open_clip", "grounding-dino", "bert-base-uncased", "sams"):
        folder_paths.add_model_folder_path(kind, str(root / kind))
    start = time.perf_counter()
    models = (dino.load_dinov2(names["dinov2"]), clip.load_open_clip(names["open_clip_model"], names["open_clip"]),
              detection.load_grounding_dino(names["grounding_dino_config"], names["grounding_dino"], names["bert"]),
              segmentation.load_sam(names["sam"]))
    print(f"loaded the four tiny scorers in {time.perf_counter() - start:.1f} s; torch threads "
          f"{torch.get_num_threads()}; images {args.image}², GroundingDINO at {args.detect_size} px")

    g = torch.Generator().manual_seed(0)
    sources = [torch.rand(1, args.image, args.image, 3, generator=g) for _ in range(2)]
    fused = torch.rand(max(args.sizes), args.image, args.image, 3, generator=g)
    rows = []
    with torch.inference_mode():
        for mode in args.modes:
            t0 = time.perf_counter()
            scorer = SimilarityScorer(*models, *sources, "owl", "jar",
                                      ScoreOptions(isolation=mode, detect_short_side=args.detect_size))
            setup = time.perf_counter() - t0
            scorer.score(fused[:1])  # warm-up
            for n in args.sizes:
                before = scorer.encoder_calls  # a fresh dict on every access
                t0 = time.perf_counter()
                scorer.score(fused[:n])
                seconds = time.perf_counter() - t0
                after = scorer.encoder_calls
                used = {k: after[k]["calls"] - before[k]["calls"] for k in ("dino", "clip", "detector", "segmenter")}
                rows.append({"mode": mode, "batch": n, "seconds": round(seconds, 3),
                             "per_image": round(seconds / n, 3), "scorer_setup_s": round(setup, 3),
                             "encoder_calls": used, "dino_images": after["dino"]["images"] - before["dino"]["images"]})
    print(f"\n{'mode':5} {'batch':>5} {'total s':>8} {'s/image':>8}  encoder calls for the batch (dino, clip, "
          f"detector, sam)")
    for r in rows:
        c = r["encoder_calls"]
        print(f"{r['mode']:5} {r['batch']:5d} {r['seconds']:8.2f} {r['per_image']:8.2f}  "
              f"{c['dino']}, {c['clip']}, {c['detector']}, {c['segmenter']}  ({r['dino_images']} images through DINO)")
    ok = all(r["encoder_calls"]["dino"] == 1 and r["encoder_calls"]["clip"] == 1 and r["dino_images"] == r["batch"]
             for r in rows)
    print(f"\nencode-once: every batch ran DINO and CLIP exactly once, on exactly its images: {ok}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
