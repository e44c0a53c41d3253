"""Re-derive strata's two constants from tuning rows only; prints JSON.

    PYTHONPATH=src python benchmarks/heldout.py --role tuning --per-class 2 5 10 20 50 \
        --strategies strata:pick=centre strata:pick=margin \
        strata:pick=margin,margin_weight=0.25 strata:pick=margin,margin_weight=1 \
        --control-strategies strata:pick=centre strata:pick=margin --name strata_constants
    PYTHONPATH=src python benchmarks/strata_constants.py benchmarks/results/strata_constants.json

`strata` labels each cell's central image while the labels are at most ``centre_below``
times the pool's effective dimension d, and past that the image maximising
sim(x, c) - w sim(x, c') (``margin_weight`` w). The tuning rows hold, per dataset,
backbone, protocol, budget and pool seed, the accuracy of the central picks and of the
margin picks for several w, and the d of that pool. For every candidate pair
(``centre_below``, w) this scores the rule by the accuracy it would have had: the mean
over datasets of the mean over that dataset's (backbone, protocol, budget, seed)
points, each dataset weighing the same. Candidates for ``centre_below`` are the
break-points labels / d of the rows (and 0). Reporting rows are refused: the constants
must come from tuning runs only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from typing import Any

import numpy as np

from _common import results_rows

SHIPPED = (3.0, 0.5)  # centre_below, margin_weight of the shipped strata
WEIGHT = re.compile(r"margin_weight=([0-9.]+)")


def variant(strategy: str) -> tuple[str, float] | None:
    """("centre", 0) or ("margin", w) for the strata variants of the tuning run."""
    if not strategy.startswith("strata:"):
        return None
    if "pick=centre" in strategy:
        return ("centre", 0.0)
    if "pick=margin" in strategy:
        m = WEIGHT.search(strategy)
        return ("margin", float(m.group(1)) if m else 0.5)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--backbones", nargs="*", default=None, help="default: every backbone")
    args = ap.parse_args(argv)
    rows = results_rows(args.results, "strata_constants", tuning_only=True)
    # point -> {variant: accuracy}, and its labels per effective dimension
    points: dict[tuple[Any, ...], dict[tuple[str, float], float]] = defaultdict(dict)
    ratio: dict[tuple[Any, ...], float] = {}
    for r in rows:
        v = variant(r["strategy"])
        if v is None or (args.backbones and r["backbone"] not in args.backbones):
            continue
        key = (r["dataset"], r["backbone"], r["protocol"], r["budget"], r["pool_seed"])
        points[key][v] = r["accuracy"]
        ratio[key] = r["budget"] / r["effective_dimension"]
    weights = sorted({v[1] for p in points.values() for v in p if v[0] == "margin"})
    complete = {k: p for k, p in points.items() if ("centre", 0.0) in p and len(p) > len(weights)}
    cuts = sorted({0.0, SHIPPED[0]} | {ratio[k] for k in complete})
    datasets = sorted({k[0] for k in complete})
    table = []
    for w in weights:
        for c in cuts:
            per = []
            for ds in datasets:
                acc = [
                    p[("centre", 0.0)] if ratio[k] <= c else p[("margin", w)]
                    for k, p in complete.items()
                    if k[0] == ds
                ]
                per.append(float(np.mean(acc)))
            table.append(
                {
                    "centre_below": round(c, 3),
                    "margin_weight": w,
                    "score": float(np.mean(per)),
                    "per_dataset": dict(zip(datasets, per, strict=True)),
                }
            )
    best = max(table, key=lambda t: t["score"])
    near = [t for t in table if t["score"] >= best["score"] - 0.001]
    shipped = next((t for t in table if (t["centre_below"], t["margin_weight"]) == SHIPPED), None)
    out = {
        "role": "tuning",
        "points": len(complete),
        "datasets": datasets,
        "best": best,
        "within_0.1_points_of_best": [(t["centre_below"], t["margin_weight"]) for t in near],
        "shipped_rule": shipped,
        "crossover_per_dataset": {
            ds: max(table, key=lambda t: t["per_dataset"][ds]) for ds in datasets
        },
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
