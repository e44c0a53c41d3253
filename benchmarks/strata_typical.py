"""Derive strata's ``typical_below`` from tuning rows only; prints JSON.

    PYTHONPATH=src python benchmarks/heldout.py --role tuning --per-class 0.5 1 2 3 \
        --strategies strata:typical_below=0 strata:pick=typical ... --name heldout_tuning_typical
    PYTHONPATH=src python benchmarks/strata_typical.py \
        benchmarks/results/heldout_tuning_typical.json

While the labels are at most ``centre_below`` times the pool's effective dimension d,
``strata`` labels the image of each cell nearest its centre; while they are at most
``typical_below`` times d it labels the cell's most typical image instead (TypiClust's
typicality: the highest mean similarity to its nearest neighbours). The tuning rows
hold, per dataset, backbone, protocol, budget and pool seed, the accuracy of both picks
on the same cells and the d of that pool. For every candidate ``typical_below`` (0 and
the break-points labels / d of the rows) this scores the rule by the accuracy it would
have had: the mean over datasets of the mean over that dataset's points, each dataset
weighing the same. It also prints the paired difference (typical less central) in
bands of labels per dimension. Reporting rows are refused: the constant must come from
tuning runs only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from itertools import pairwise
from typing import Any

import numpy as np

from _common import results_rows

SHIPPED = 0.5  # typical_below of the shipped strata
CENTRE_BELOW = 3.0  # past it the shipped rule makes margin picks: no centre to compare
BANDS = (0.0, 0.5, 1.0, 2.0, CENTRE_BELOW)


def variant(row: dict[str, Any]) -> str | None:
    """``typical`` or ``centre``: which pick made the row's selection, if either."""
    s = row["strategy"]
    ratio = row["budget"] / row["effective_dimension"]
    if ratio > CENTRE_BELOW:
        return None
    if s == "strata:pick=typical":
        return "typical"
    if s in ("strata:pick=centre", "strata:typical_below=0"):
        return "centre"
    if s == "strata":  # auto: what the row's version chose at this ratio
        below = row.get("method", {}).get("strata", {}).get("typical_below") or 0.0
        return "typical" if ratio <= below else "centre"
    return None


def score(points: list[dict[str, Any]], below: float) -> tuple[float, dict[str, float]]:
    """Mean over datasets of the rule's mean accuracy over the dataset's points."""
    per: dict[str, list[float]] = defaultdict(list)
    for p in points:
        per[p["dataset"]].append(p["typical"] if p["ratio"] <= below else p["centre"])
    each = {d: float(np.mean(v)) for d, v in sorted(per.items())}
    return float(np.mean(list(each.values()))), each


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", nargs="+")
    args = ap.parse_args(argv)
    rows = results_rows(args.results, "strata_typical", tuning_only=True)
    by_point: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        v = variant(r)
        if v is None:
            continue
        key = (r["dataset"], r["backbone"], r["protocol"], r["budget"], r["pool_seed"])
        p = by_point.setdefault(
            key,
            {
                "dataset": r["dataset"],
                "backbone": r["backbone"],
                "protocol": r["protocol"],
                "budget": r["budget"],
                "ratio": round(r["budget"] / r["effective_dimension"], 3),
            },
        )
        p[v] = float(r["accuracy"])
    points = [p for p in by_point.values() if "typical" in p and "centre" in p]
    if not points:
        print("strata_typical: no point has both a typical and a central pick", file=sys.stderr)
        return 2
    candidates = sorted({0.0, SHIPPED} | {p["ratio"] for p in points})
    scored = [(c, *score(points, c)) for c in candidates]
    best = max(scored, key=lambda t: (t[1], -t[0]))  # ties: the smaller switch
    bands = []
    for lo, hi in pairwise(BANDS):
        diffs = [100 * (p["typical"] - p["centre"]) for p in points if lo < p["ratio"] <= hi]
        if diffs:
            bands.append(
                {
                    "labels_per_dimension": [lo, hi],
                    "points": len(diffs),
                    "typical_less_centre_points": round(float(np.mean(diffs)), 2),
                    "standard_error": round(float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))), 2)
                    if len(diffs) > 1
                    else None,
                    "typical_ahead": int(sum(d > 0 for d in diffs)),
                    "typical_behind": int(sum(d < 0 for d in diffs)),
                }
            )
    shipped = next(t for t in scored if t[0] == SHIPPED)
    out = {
        "role": "tuning",
        "points": len(points),
        "datasets": sorted({p["dataset"] for p in points}),
        "bands": bands,
        "best": {"typical_below": best[0], "score": best[1], "per_dataset": best[2]},
        "within_0.1_points_of_best": [c for c, s, _ in scored if s >= best[1] - 1e-3],
        "shipped_rule": {"typical_below": SHIPPED, "score": shipped[1], "per_dataset": shipped[2]},
        "never_typical": {"typical_below": 0.0, "score": scored[0][1], "per_dataset": scored[0][2]},
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
