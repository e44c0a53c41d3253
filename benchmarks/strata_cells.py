"""strata's cells and the class balance of its picks on the quality harness's bank; prints JSON.

    PYTHONPATH=src python benchmarks/strata_cells.py [--budgets 20 200 2000] [--seed 0]

For each budget: the sizes of the cells `strata` cuts, as multiples of the equal share
N / budget (10th, 50th and 90th percentile), the Lloyd steps its refinement ran, and
how many picks the rarest and the commonest class get from `strata`, `kmeans` and
`random`. The bank is the pre-trained EfficientNet-Lite0 K=5 bank of
``benchmarks/quality.py`` (the same cache, so it is extracted once).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from geal.sampling import select
from geal.sampling._global import global_pool
from geal.sampling.strata import tightest_cells, to_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATA, MODEL, pretrained_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA, help="IDX folder (train-* and t10k-* files)")
    ap.add_argument("--pool-size", type=int, default=20000, help="first N training images")
    ap.add_argument("--budgets", type=int, nargs="+", default=[20, 200, 2000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="bank cache (default: <geal cache>/eval)")
    args = ap.parse_args()
    task = pretrained_task(args.data, args.pool_size, args.cache)
    bank = task.backbones[MODEL].banks[5]
    classes = np.asarray(task.pool_labels)
    out = []
    for b in args.budgets:
        pool = global_pool(bank, b, None, "cosine")
        labels, _, steps = tightest_cells(to_grid(pool.x), pool.labeled, b, args.seed)
        share = np.bincount(labels, minlength=b) / (pool.n / b)
        row = {
            "budget": b,
            "cell_size_over_share_p10_p50_p90": np.round(np.quantile(share, [0.1, 0.5, 0.9]), 2),
            "refinement_steps": steps,
        }
        for s in ("strata", "kmeans", "random"):
            picks = select(bank, b, s, seed=args.seed, progress=False).selection(b)
            counts = np.bincount(classes[picks], minlength=task.classes)
            row[f"{s}_picks_per_class_min_max"] = [int(counts.min()), int(counts.max())]
        out.append(row)
    print(json.dumps({"pool": pool.n, "seed": args.seed, "budgets": out}, default=list, indent=2))


if __name__ == "__main__":
    main()
