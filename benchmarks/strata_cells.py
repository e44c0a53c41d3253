"""strata's cells and the class balance of its picks on the quality harness's bank; prints JSON.

    PYTHONPATH=src python benchmarks/strata_cells.py [--budgets 20 200 2000] [--seed 0]

For each budget: the sizes of the cells `strata` cuts, as multiples of the equal share
N / budget (10th, 50th and 90th percentile), the Lloyd steps its refinement ran, and
how many picks the rarest and the commonest class get from `strata`, `kmeans` and
`random`. Then how much of the pool's spread the picks keep: the share of the pool's
variance inside the cells (what a cell's centre averages away), and the variance of
the picks over the pool's (unit features) for `strata`'s two rules (``pick="centre"``
and ``"margin"``) and for random picks, on seeds 0 to 2. The bank is the pre-trained
EfficientNet-Lite0 K=5 bank of ``benchmarks/quality.py`` (the same cache, so it is
extracted once).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from geal.sampling import RunSettings, select
from geal.sampling.features import global_pool
from geal.sampling.strata import effective_dimension, tightest_cells, to_grid

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
    pool = global_pool(bank, max(args.budgets), None, "cosine")
    x = to_grid(pool.x)
    x64 = x.astype(np.float64)
    total = float(x64.var(0).sum())

    def kept(rows: np.ndarray) -> float:
        return round(float(x64[rows].var(0).sum()) / total, 3)

    for b in args.budgets:
        labels, _, steps = tightest_cells(x, pool.labeled, b, args.seed)
        sizes = np.bincount(labels, minlength=b)
        share = sizes / (pool.n / b)
        means = np.zeros((b, x.shape[1]))
        np.add.at(means, labels, x64)
        means /= np.maximum(sizes, 1)[:, None]
        within = float(((x64 - means[labels]) ** 2).sum(1).mean())
        row = {
            "budget": b,
            "cell_size_over_share_p10_p50_p90": np.round(np.quantile(share, [0.1, 0.5, 0.9]), 2),
            "refinement_steps": steps,
        }
        for s in ("strata", "kmeans", "random"):
            ranking = select(bank, b, s, seed=args.seed, run=RunSettings(progress=False))
            if s == "strata":
                row["pick"] = ranking.params["pick"]
            picks = ranking.selection(b)
            counts = np.bincount(classes[picks], minlength=task.classes)
            row[f"{s}_picks_per_class_min_max"] = [int(counts.min()), int(counts.max())]
        row["within_cell_share_of_pool_variance"] = round(within / total, 3)
        for rule in ("centre", "margin"):
            row[f"{rule}_picks_variance_over_pool_seeds_0_2"] = [
                kept(select(bank, b, "strata", seed=s, pick=rule).order) for s in range(3)
            ]
        row["random_picks_variance_over_pool_seeds_0_2"] = [
            kept(select(bank, b, "random", seed=s).order) for s in range(3)
        ]
        out.append(row)
    doc = {"pool": pool.n, "seed": args.seed, "effective_dimension": effective_dimension(x)}
    print(json.dumps(doc | {"budgets": out}, default=list, indent=2))


if __name__ == "__main__":
    main()
