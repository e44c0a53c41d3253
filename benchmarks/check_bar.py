"""Check the default sampler against the bar on reporting rows; print every shortfall.

    PYTHONPATH=src python benchmarks/check_bar.py benchmarks/results/heldout.json [--all]

The bar, at every (dataset, backbone, protocol, budget) of the reporting rows: the
default's mean accuracy is at least the best peer's mean minus one standard deviation
(over pool seeds), and strictly above random's mean. Peers are every other strategy in
the rows except random and the traditional loops. Tuning rows are never checked: the
method was chosen on them. Prints one line per point that falls short (``--all``: every
point) and a count; exits 1 when a point falls short, 0 when none does.

``--seats`` puts every strategy of the rows in the default's seat in turn and prints how
many of its points it would meet, overall and at budgets up to ``--tiny`` (30: 3 labels
per class on the harness's ten-class datasets): how strict
the bar is, measured on the same rows (a method only as good as the best of several
equals falls short at some points by chance alone).
"""

from __future__ import annotations

import argparse
import sys

from _common import results_rows
from geal.evaluate.heldout import REPORTING, bar_points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", nargs="+", help="results JSON files with role-marked rows")
    ap.add_argument("--default", default="strata")
    ap.add_argument("--all", action="store_true", help="print the points that pass too")
    ap.add_argument(
        "--seats", action="store_true", help="also score every strategy in the default's seat"
    )
    ap.add_argument("--tiny", type=int, default=30, help="largest budget counted as tiny")
    args = ap.parse_args(argv)
    rows = results_rows(args.results, "check_bar")
    points = bar_points(rows, args.default, role=REPORTING)
    if not points:
        print("check_bar: no reporting rows with the default and random in them", file=sys.stderr)
        return 2
    short = [p for p in points if not (p.meets_peer and p.beats_random)]
    for p in points if args.all else short:
        print(p.line())
    below_peer = sum(not p.meets_peer for p in points)
    below_random = sum(not p.beats_random for p in points)
    print(
        f"{len(points) - len(short)} of {len(points)} reporting points meet the bar; "
        f"{below_peer} below the best peer's mean - std, {below_random} not above random"
    )
    if args.seats:
        print_seats(rows, args.tiny)
    return 1 if short else 0


def print_seats(rows: list[dict], tiny_budget: int) -> None:
    """Every strategy of the reporting rows in the default's seat: points met."""
    names = sorted({r["strategy"] for r in rows if r.get("role") == REPORTING} - {"random"})
    for name in names:
        points = bar_points(rows, name, role=REPORTING)
        tiny = [p for p in points if p.budget <= tiny_budget]
        met = sum(p.meets_peer and p.beats_random for p in points)
        met_tiny = sum(p.meets_peer and p.beats_random for p in tiny)
        print(
            f"as the default, {name} meets {met} of {len(points)} points, "
            f"{met_tiny} of {len(tiny)} at budgets up to {tiny_budget}"
        )


if __name__ == "__main__":
    sys.exit(main())
