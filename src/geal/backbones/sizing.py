"""The input side for a pool when none is given: the model's own, smaller for small images.

Upscaling a 28 px digit to 224 px costs a CNN about 20 times the compute of 64 px
(``benchmarks/results/throughput_cpu.json``) and, on the tuning runs of the held-out
harness (validation splits of the digits and MNIST training images,
``efficientnet_lite0``, 5 pool seeds), it gave worse picks, not better: with a CNN
trained from scratch on the picked images (so the size changes only the selection),
``strata`` at 1 label per class reached 74.3 % from 64 px against 56.4 % from 224 px;
with a linear probe, 64 px beat 128 and 224 px at every budget, and at the stride-32
stage 64 px (2x2 tokens) beat 128 px (4x4 tokens) too (docs/scale.md, "Input size for
small images"). So an image is scaled by about :data:`UPSCALE` (28 px -> 64 px),
rounded to whole tokens, at least :data:`MIN_TOKENS` a side, and never beyond the
model's own side: images of about 100 px or more get the model's side, as before.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from geal.pools.base import Pool

UPSCALE = 64 / 28
MIN_TOKENS = 2
SAMPLE = 32


def typical_side(pool: Pool, sample: int = SAMPLE) -> int | None:
    """Median longest side of up to ``sample`` evenly spaced images of ``pool`` (files are
    measured from their headers, without decoding); None when none of them can be read."""
    n = len(pool)
    if n == 0:
        return None
    picks = sorted({round(k * (n - 1) / max(1, sample - 1)) for k in range(min(sample, n))})
    sides = []
    for i in picks:
        try:
            path = pool[i].path
            if path is not None:
                with Image.open(path) as im:
                    sides.append(max(im.size))
            else:
                sides.append(max(pool.load(i).size))
        except Exception:  # unreadable images are the extraction's to report
            continue
    return int(statistics.median(sides)) if sides else None


def input_side(model_side: int, stride: int, image_side: int | None) -> int:
    """The input side for images whose longest side is ``image_side`` (None: unknown),
    for a model taking ``model_side`` px with ``stride`` px per token."""
    if image_side is None:
        return model_side
    tokens = max(MIN_TOKENS, round(UPSCALE * image_side / stride))
    return min(model_side, tokens * stride)
