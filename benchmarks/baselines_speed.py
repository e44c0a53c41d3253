"""Time the global-feature baselines on a random bank; prints one JSON line per run.

PYTHONPATH=src python benchmarks/baselines_speed.py --n 60000 --dim 320 --budgets 100 2000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from geal.bank import PatternBank
from geal.sampling import RunSettings, select

BASELINES = ("kcenter", "kmeans", "typiclust", "probcover", "activeft")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--dim", type=int, default=320)
    ap.add_argument("--budgets", type=int, nargs="+", default=[100, 2000])
    ap.add_argument("--strategies", nargs="+", default=list(BASELINES))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    x = np.random.default_rng(args.seed).standard_normal((args.n, args.dim), dtype=np.float32)
    bank = PatternBank.from_arrays(x, np.ones(args.n, np.int64), global_=x)
    for name in args.strategies:
        for budget in args.budgets:
            t = time.perf_counter()
            r = select(bank, budget, name, seed=args.seed, run=RunSettings(progress=False))
            row = {
                "strategy": name,
                "n": args.n,
                "dim": args.dim,
                "budget": budget,
                "seconds": round(time.perf_counter() - t, 2),
                "nested": r.nested,
                "params": r.params,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
