"""What moving `strata`'s picks towards coverage buys and costs, per budget; prints JSON.

    PYTHONPATH=src python benchmarks/strata_tradeoff.py [--budgets 20 50 200 500]
        [--seeds 0 1 2 3 4] [--protocols linear]

`strata` labels the image nearest the centre of each of its cells. At 200 labels on
the linear protocol of ``benchmarks/quality.py`` it trails ActiveFT, whose picks lie
further from each other. This measures, on the same task and bank, two ways of
spreading strata's picks, against the shipped `strata` and `activeft`:

- ``strata-spread-M``: the same cells; each cell, largest first, labels, of its ``M``
  images nearest the centre, the one least similar to the other cells' anchors (the
  picks made so far, the centres of the cells not picked yet).
- ``strata-polish``: strata's picks as ActiveFT's starting centroids, then 100 of its
  Adam steps (its defaults otherwise), then each centroid's nearest free image.

The rows are ``benchmarks/quality.py``'s (accuracy per protocol, budget and seed); the
summary gives each variant's mean and deviation over the seeds and its mean
difference to `strata` per budget.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geal.evaluate import PROTOCOLS, run_curves
from geal.sampling import select
from geal.sampling._global import global_pool, nearest_unused
from geal.sampling.activeft import fit_centroids
from geal.sampling.strata import tightest_cells, to_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATA, MODEL, pretrained_task

Sampler = Callable[..., np.ndarray]


def spread(m: int) -> Sampler:
    """strata's cells, each labelling the least crowded of its ``m`` most central images."""

    def fn(
        bank: Any, budget: int, *, seed: int = 0, labeled: Sequence[int] | None = None
    ) -> np.ndarray:
        pool = global_pool(bank, budget, None, "cosine")
        x = to_grid(pool.x)
        labels, centres, _ = tightest_cells(x, pool.labeled, budget, seed)
        k = centres.shape[0]
        by_cell = np.argsort(labels, kind="stable")
        starts = np.searchsorted(labels[by_cell], np.arange(k + 1))
        anchors = centres.copy()
        picks: list[int] = []
        for j in np.argsort(-np.diff(starts), kind="stable"):
            rows = by_cell[starts[j] : starts[j + 1]]
            if rows.size == 0:
                continue
            near = rows[np.argsort(-(x[rows] @ centres[j]), kind="stable")[:m]]
            crowd = x[near] @ anchors.T
            crowd[:, j] = -np.inf  # its own anchor does not crowd it
            picks.append(int(near[int(np.argmin(crowd.max(1)))]))
            anchors[j] = x[picks[-1]]
        return pool.index[np.asarray(picks, np.int64)]

    return fn


def polish(steps: int) -> Sampler:
    """strata's picks moved by ``steps`` of ActiveFT's optimisation."""

    def fn(
        bank: Any, budget: int, *, seed: int = 0, labeled: Sequence[int] | None = None
    ) -> np.ndarray:
        pool = global_pool(bank, budget, None, "cosine", normalise=True)
        start = select(bank, budget, "strata", seed=seed, progress=False).selection(budget)
        rows = np.searchsorted(pool.index, start)
        rng = np.random.default_rng([int(seed), steps])
        fit = fit_centroids(
            pool.x, pool.x[rows], pool.x[pool.labeled], rng, iterations=steps, quiet=True
        )
        got = nearest_unused(pool.x, pool.pickable, fit.centroids, np.arange(budget))
        return pool.index[got]

    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA, help="IDX folder (train-* and t10k-* files)")
    ap.add_argument("--pool-size", type=int, default=20000, help="first N training images")
    ap.add_argument("--budgets", type=int, nargs="+", default=[20, 50, 200, 500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--protocols", nargs="+", default=["linear"], choices=PROTOCOLS)
    ap.add_argument("--spread", type=int, nargs="+", default=[5, 20], help="values of M")
    ap.add_argument("--cache", default=None, help="bank cache (default: <geal cache>/eval)")
    args = ap.parse_args()
    if min(args.spread) < 1 or min(args.budgets) < 1:
        ap.error("--spread and --budgets take positive numbers")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    task = pretrained_task(args.data, args.pool_size, args.cache)
    strategies: list[Any] = ["strata", "activeft", ("strata-polish", polish(100))]
    strategies += [(f"strata-spread-{m}", spread(m)) for m in args.spread]
    rows = run_curves(task, strategies, args.budgets, args.seeds, args.protocols, [MODEL])
    summary: dict[str, Any] = {}
    for p in args.protocols:
        acc: dict[tuple[str, int], list[float]] = {}
        for r in rows:
            if r["protocol"] == p:
                acc.setdefault((r["strategy"], r["budget"]), []).append(100 * r["accuracy"])
        summary[p] = {
            name: {
                str(b): {
                    "mean": round(float(np.mean(acc[(name, b)])), 2),
                    "std": round(float(np.std(acc[(name, b)])), 2),
                    "minus_strata": round(
                        float(np.mean(acc[(name, b)]) - np.mean(acc[("strata", b)])), 2
                    ),
                }
                for b in args.budgets
            }
            for name in dict.fromkeys(s for s, _ in acc)
        }
    print(
        json.dumps(
            {
                "pool": task.n,
                "budgets": args.budgets,
                "seeds": args.seeds,
                "summary": summary,
                "rows": [
                    {k: r[k] for k in ("strategy", "protocol", "budget", "seed", "accuracy")}
                    for r in rows
                ],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
