"""Extraction speed of one ViT pass vs the official two-pass way; prints JSON.

    python benchmarks/extract_speed.py [--model dino_vits16] [--images 256] [--batch-size 32]

Measures, on this machine, with random weights (the speed does not depend on them):

- ``forward``: images/s of the backbone alone on preprocessed tensors, fp32 and bf16,
  for geal's single pass (tokens of block L-1 + last-block CLS attention) and for the
  official two-pass way (one full pass for the tokens, a second for the attention);
- ``kmeans``: seconds per image spent in the attention filter + batched k-means;
- ``end_to_end``: images/s of ``geal.extract`` on a folder of 224 px JPEGs (decode in
  DataLoader workers, model, filter, k-means, shard writes), fp32 and bf16.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine


def make_jpegs(root: Path, n: int, size: int = 224) -> None:
    """Smooth synthetic photos (gradients + blobs): decode cost like real JPEGs, not noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(n):
        img = np.zeros((size, size, 3), np.float32)
        for c in range(3):
            a, b, ph = rng.uniform(1, 6, 3)
            img[..., c] = 0.5 + 0.5 * np.sin(a * xx * 6.28 + b * yy * 3.14 + ph)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, 1, 3)
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.05 + 0.2 * r) ** 2
            img[mask] = rng.uniform(0, 1, 3)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"{i:05d}.jpg", quality=90)


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize()


def time_forward(fn, x: torch.Tensor, precision: str, repeats: int, summary=min) -> float:  # type: ignore[no-untyped-def]
    """Images/s of ``fn`` on the batch ``x`` after a warm-up: ``summary`` (the best by
    default) of ``repeats`` timed passes."""
    bf16 = precision == "bf16"
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        fn(x[:4])
        fn(x)
        _sync(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            _sync(x)
            times.append(time.perf_counter() - t)
    return x.shape[0] / summary(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dino_vits16")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--images", type=int, default=256, help="images for the end-to-end run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    from geal.backbones import create_backbone
    from geal.backbones.vit import two_pass_reference
    from geal.extract import extract
    from geal.patterns import knowledge_clusters
    from geal.pools import open_pool

    bb = create_backbone(a.model, "random", a.device, image_size=a.image_size)
    x = torch.randn(
        a.batch_size, 3, a.image_size, a.image_size, generator=torch.Generator().manual_seed(0)
    ).to(bb.device)
    forward = {}
    for prec in ("fp32", "bf16"):
        forward[prec] = {"single_pass": round(time_forward(bb, x, prec, a.repeats), 2)}
        if bb.kind == "vit":
            two = round(time_forward(lambda im: two_pass_reference(bb, im), x, prec, a.repeats), 2)
            forward[prec]["two_pass"] = two
            forward[prec]["speedup"] = round(forward[prec]["single_pass"] / two, 2)

    with torch.inference_mode():
        out = bb(x)
        idx = list(range(a.batch_size))
        knowledge_clusters(out.tokens, out.saliency, idx)
        t = time.perf_counter()
        for _ in range(a.repeats):
            knowledge_clusters(out.tokens, out.saliency, idx)
        _sync(x)
        km = (time.perf_counter() - t) / a.repeats / a.batch_size

    e2e = {}
    with tempfile.TemporaryDirectory() as tmp:
        pool_dir = Path(tmp) / "pool"
        pool_dir.mkdir()
        make_jpegs(pool_dir, a.images, a.image_size)
        pool = open_pool(pool_dir)
        for prec in ("fp32", "bf16"):
            _, s = extract(pool, Path(tmp) / f"bank-{prec}", backbone=bb, precision=prec,
                           batch_size=a.batch_size, workers=a.workers, progress=False)  # fmt: skip
            e2e[prec] = {
                "images_per_s": round(s.images_per_second, 2),
                "seconds": round(s.seconds, 2),
            }
    best = max(e2e.values(), key=lambda r: r["images_per_s"])
    print(json.dumps({
        "benchmark": "extract_speed", "model": a.model, "image_size": a.image_size,
        "batch_size": a.batch_size, "weights": "random", "device": str(bb.device), "machine": machine(),
        "forward_images_per_s": forward,
        "kmeans_seconds_per_image": round(km, 5),
        "kmeans_share_of_end_to_end": round(km * best["images_per_s"], 4),
        "end_to_end": e2e,
        "target_images_per_s": 25,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
