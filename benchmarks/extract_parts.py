"""Where extraction time goes, piece by piece, in one process; prints JSON.

    python benchmarks/extract_parts.py [--size 64] [--photo-side 64] [--images 1568]
        [--precision fp32] [--model efficientnet_lite0]

On ``--images`` synthetic JPEGs of ``--photo-side`` px (``extract_speed.make_jpegs``),
encoded at ``--size`` px, after an untimed warm-up extraction, in ms per image:

- ``hash``: content keys (``geal.internal.content.content_keys``);
- ``decode``: pool decoding at the input's scale (``Pool.load(i, size)``) and
  ``Preprocess.pixels``, batches collated as the local engine does;
- ``decode_full``: the same with every pixel decoded (``Pool.load(i)``), what extraction
  did before the draft scale reached the pool;
- ``forward``: the backbone alone on those batches;
- ``encode``: forward + attention filter + per-image k-means (``encode_batch``);
- ``extract``: the whole ``geal.extract`` with its defaults;
and ``forward / extract``. docs/scale.md quotes ``--size 64`` (1,568 images of 64 px)
and ``--size 224 --photo-side 2400 --images 48``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from extract_speed import make_jpegs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=64, help="input side")
    ap.add_argument("--photo-side", type=int, default=None, help="JPEG side (default: --size)")
    ap.add_argument("--images", type=int, default=1568)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()

    from geal.backbones import create_backbone
    from geal.engines.encode import encode_batch
    from geal.extract import extract
    from geal.internal.content import content_keys
    from geal.pools import open_pool

    n, bs = a.images, a.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pool"
        root.mkdir()
        make_jpegs(root, n, a.photo_side or a.size)
        pool = open_pool(root)
        bb = create_backbone(a.model, None, "cpu", image_size=a.size)
        pp = bb.preprocess
        warm, _ = extract(pool.head(bs), Path(tmp) / "warm", backbone=bb,
                          precision=a.precision, batch_size=bs, progress=False)  # fmt: skip
        ms: dict[str, float] = {}

        def timed(name: str, fn):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            out = fn()
            ms[name] = round((time.perf_counter() - t) / n * 1000, 3)
            return out

        timed("hash", lambda: content_keys(pool, range(n), progress=False))
        spans = [range(s, min(n, s + bs)) for s in range(0, n, bs)]

        def decode(draft: int | None) -> list[torch.Tensor]:
            return [torch.stack([pp.pixels(pool.load(i, draft)) for i in s]) for s in spans]

        batches = [pp.normalize(x) for x in timed("decode", lambda: decode(a.size))]
        timed("decode_full", lambda: decode(None))
        bf16 = a.precision == "bf16"

        def forward() -> None:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                for x in batches:
                    bb(x)

        timed("forward", forward)
        opts = warm.manifest["options"]  # extraction's own: threshold, K, seed, precision...
        timed(
            "encode",
            lambda: [
                encode_batch(bb, x, list(s), opts) for x, s in zip(batches, spans, strict=True)
            ],
        )
        timed("extract", lambda: extract(pool, Path(tmp) / "bank", backbone=bb,
                                         precision=a.precision, batch_size=bs, progress=False))  # fmt: skip
    print(json.dumps({
        "benchmark": "extract_parts", "model": a.model, "input_side": a.size,
        "photo_side": a.photo_side or a.size, "images": n, "precision": a.precision,
        "ms_per_image": ms, "forward_over_extract": round(ms["forward"] / ms["extract"], 3),
        "machine": machine(),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
