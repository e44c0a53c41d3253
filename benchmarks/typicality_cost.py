"""Time TypiClust typicality within one strata cell, by cell size; prints JSON.

    PYTHONPATH=src python benchmarks/typicality_cost.py [--sizes 5000 10000 20000]

``strata``'s typical picks score every image of a cell against every other
(:func:`geal.sampling.strata.cell_typicality`), so the cost grows with the square of the
cell: this is what sets ``TYPICAL_SAMPLE``, the cell size past which the typical image is
taken from a seeded sample. Unit rows of 320 dimensions (EfficientNet-Lite0's stage-3
width), rounded to the grid as strata rounds them, ``knn`` = 20.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _common import machine
from geal.coverage import to_grid
from geal.sampling.strata import TYPICAL_SAMPLE, cell_typicality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    ap.add_argument("--dim", type=int, default=320)
    a = ap.parse_args()
    rows = []
    for n in a.sizes:
        x = np.random.default_rng(0).normal(size=(n, a.dim)).astype(np.float32)
        x = to_grid(x / np.linalg.norm(x, axis=1, keepdims=True))
        t = time.perf_counter()
        cell_typicality(x, np.arange(n), 20, 4096)
        rows.append({"cell_images": n, "seconds": round(time.perf_counter() - t, 2)})
    out = {"dim": a.dim, "typical_sample": TYPICAL_SAMPLE, "rows": rows, "machine": machine()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
