"""Check the default sampler against the bar on reporting rows; print every shortfall.

    PYTHONPATH=src python benchmarks/check_bar.py benchmarks/results/heldout.json [--all]

The bar, at every (dataset, backbone, protocol, budget) of the reporting rows: the
default's mean accuracy is at least the best peer's mean minus one standard deviation
(over pool seeds), and strictly above random's mean. Peers are every other strategy in
the rows except random and the traditional loops. Tuning rows are never checked: the
method was chosen on them. Prints one line per point that falls short (``--all``: every
point) and a count; exits 1 when a point falls short, 0 when none does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geal.evaluate.heldout import REPORTING, bar_points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", nargs="+", help="results JSON files with role-marked rows")
    ap.add_argument("--default", default="strata")
    ap.add_argument("--all", action="store_true", help="print the points that pass too")
    args = ap.parse_args(argv)
    rows = []
    for f in args.results:
        path = Path(f)
        if not path.is_file():
            print(f"check_bar: no such file {path}", file=sys.stderr)
            return 2
        try:
            rows += json.loads(path.read_text())["rows"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            print(f"check_bar: {path} is not a results file with rows ({e})", file=sys.stderr)
            return 2
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
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
