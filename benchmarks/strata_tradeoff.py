"""Which image of each of `strata`'s cells to label, per budget; prints JSON.

    PYTHONPATH=src python benchmarks/strata_tradeoff.py [--budgets 10 20 30 40 50 100 200 500]
        [--seeds 0 1 2 3 4] [--protocols linear] [--weights 0.3 0.5 1] [--spread 5 20]
        [--polish 100] [--control]

`strata` cuts the pool into as many equal-mass cells as the budget and labels one image
per cell: the one nearest the cell's centre while the labels are at most 3 per
effective dimension of the pool, past that the one maximising sim(x, c) - w sim(x, c')
(c' the nearest other centre, w = 1/2). This measures, on the task and bank of
``benchmarks/quality.py`` (its pre-trained backbone, or with ``--control`` its
random-weight control) and on the same cells, every rule against the shipped `strata`
and `activeft`:

- ``strata-centre``: the image nearest the centre (``pick="centre"``), the reference.
- ``strata-margin-W``: ``pick="margin"`` with ``margin_weight`` W.
- ``strata-spread-M``: each cell, largest first, labels, of its ``M`` images nearest
  the centre, the one least similar to the other cells' anchors (the picks made so
  far, the centres of the cells not picked yet).
- ``strata-polish``: the central picks as ActiveFT's starting centroids, then
  ``--polish`` of its Adam steps (its defaults otherwise), then each centroid's nearest
  free image.

The rows are ``benchmarks/quality.py``'s (accuracy per protocol, budget and seed); the
summary gives each rule's mean and deviation over the seeds and its mean difference to
``strata-centre`` per budget, and the labels per effective dimension of each budget.
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
from geal.sampling.activeft import fit_centroids
from geal.sampling.features import global_pool, nearest_unused
from geal.sampling.strata import effective_dimension, pick_scores, tightest_cells, to_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATA, control_task, pretrained_task

Sampler = Callable[..., np.ndarray]
Cells = tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
CUTS: dict[tuple[int, int, int], Cells] = {}


def cells_of(bank: Any, budget: int, seed: int) -> Cells:
    """strata's cells for (budget, seed), cut once for every rule: the pool, its grid
    rows, the cell of every row, the centres, the rows of each cell (``by_cell`` and
    ``starts``)."""
    key = (id(bank), budget, seed)
    if key not in CUTS:
        pool = global_pool(bank, budget, None, "cosine")
        x = to_grid(pool.x)
        labels, centres, _ = tightest_cells(x, pool.labeled, budget, seed)
        by_cell = np.argsort(labels, kind="stable")
        starts = np.searchsorted(labels[by_cell], np.arange(centres.shape[0] + 1))
        CUTS[key] = (pool, x, labels, centres, by_cell, starts)
    return CUTS[key]


def margin(weight: float) -> Sampler:
    """strata's cells, each labelling argmax sim(x, c) - weight * sim(x, c') (weight 0:
    the central image), as ``pick="margin"`` does, on the cached cells."""

    def fn(
        bank: Any, budget: int, *, seed: int = 0, labeled: Sequence[int] | None = None
    ) -> np.ndarray:
        pool, x, labels, centres, by_cell, starts = cells_of(bank, budget, seed)
        score = pick_scores(x, centres, labels, weight, 4096)
        picks = []
        for j in np.argsort(-np.diff(starts), kind="stable"):
            rows = by_cell[starts[j] : starts[j + 1]]
            picks.append(int(rows[int(np.argmax(score[rows]))]))
        return pool.index[np.asarray(picks, np.int64)]

    return fn


def shipped(bank: Any, budget: int, *, seed: int = 0, labeled: Any = None) -> np.ndarray:
    """The shipped ``strata``; checks that its picks are the rule it chose, on these cells."""
    r = select(bank, budget, "strata", seed=seed)
    rule = margin(r.params["margin_weight"] if r.params["pick"] == "margin" else 0.0)
    if not np.array_equal(rule(bank, budget, seed=seed), r.order):
        raise SystemExit(f"strata's picks differ from its {r.params['pick']} rule at {budget}")
    return r.order


def spread(m: int) -> Sampler:
    """strata's cells, each labelling the least crowded of its ``m`` most central images."""

    def fn(
        bank: Any, budget: int, *, seed: int = 0, labeled: Sequence[int] | None = None
    ) -> np.ndarray:
        pool, x, _, centres, by_cell, starts = cells_of(bank, budget, seed)
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
        start = margin(0.0)(bank, budget, seed=seed)
        rows = np.searchsorted(pool.index, start)
        rng = np.random.default_rng([int(seed), steps])
        fit = fit_centroids(
            pool.x, pool.x[rows], pool.x[pool.labeled], rng, iterations=steps, progress=False
        )
        got = nearest_unused(pool.x, pool.pickable, fit.centroids, np.arange(budget))
        return pool.index[got]

    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA, help="IDX folder (train-* and t10k-* files)")
    ap.add_argument("--pool-size", type=int, default=20000, help="first N training images")
    ap.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 30, 40, 50, 100, 200, 500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--protocols", nargs="+", default=["linear"], choices=PROTOCOLS)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.5, 1.0], help="W")
    ap.add_argument("--spread", type=int, nargs="*", default=[5, 20], help="values of M")
    ap.add_argument("--polish", type=int, default=100, help="ActiveFT steps (0: no polish)")
    ap.add_argument(
        "--control", action="store_true", help="the random-weight control backbone's bank"
    )
    ap.add_argument("--cache", default=None, help="bank cache (default: <geal cache>/eval)")
    args = ap.parse_args()
    if min(args.spread, default=1) < 1 or min(args.budgets) < 1 or args.polish < 0:
        ap.error("--spread and --budgets take positive numbers, --polish one >= 0")
    if not all(0 < w <= 1 for w in args.weights):
        ap.error("--weights take numbers in (0, 1]")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    task = (control_task if args.control else pretrained_task)(
        args.data, args.pool_size, args.cache
    )
    (backbone,) = task.backbones
    bank = task.backbones[backbone].bank()
    d_eff = effective_dimension(to_grid(global_pool(bank, 1, None, "cosine").x))
    strategies: list[Any] = [("strata", shipped), ("strata-centre", margin(0.0)), "activeft"]
    strategies += [(f"strata-margin-{w:g}", margin(w)) for w in args.weights]
    strategies += [("strata-polish", polish(args.polish))] if args.polish else []
    strategies += [(f"strata-spread-{m}", spread(m)) for m in args.spread]
    rows = run_curves(task, strategies, args.budgets, args.seeds, args.protocols, [backbone])
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
                    "minus_centre": round(
                        float(np.mean(acc[(name, b)]) - np.mean(acc[("strata-centre", b)])), 2
                    ),
                }
                for b in args.budgets
            }
            for name in dict.fromkeys(s for s, _ in acc)
        }
    print(
        json.dumps(
            {
                "backbone": backbone,
                "pool": task.n,
                "budgets": args.budgets,
                "seeds": args.seeds,
                "effective_dimension": round(d_eff, 3),
                "labels_per_dimension": {str(b): round(b / d_eff, 2) for b in args.budgets},
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
