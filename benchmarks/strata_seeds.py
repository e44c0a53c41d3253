"""What ``--seed`` changes for ``strata``: the share of picks seeds 1-4 keep from seed 0.

    PYTHONPATH=src python benchmarks/strata_seeds.py [--budgets 10,20,50,200,1000]

On the quality harness's bank (the first 20,000 Fashion-MNIST training images,
EfficientNet-Lite0 at 64 px, the same cache as ``quality.py``). The seed draws the two
starting centres of every 2-means split, so it changes the cells; this measures how
much the picks follow. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from geal.sampling import RunSettings, select
from quality import DATA, pretrained_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--pool-size", type=int, default=20000)
    ap.add_argument("--budgets", default="10,20,50,200,1000")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cache", default=None)
    a = ap.parse_args()
    bank = pretrained_task(a.data, a.pool_size, a.cache).backbone().bank()
    quiet = RunSettings(progress=False)
    rows = []
    for b in (int(x) for x in a.budgets.split(",")):
        picks = [
            set(select(bank, b, "strata", seed=s, run=quiet).order.tolist()) for s in range(a.seeds)
        ]
        shared = [round(len(picks[0] & p) / b, 3) for p in picks[1:]]
        rows.append(
            {
                "budget": b,
                "shared_with_seed_0": shared,
                "identical": sum(p == picks[0] for p in picks[1:]),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "strata_seeds", "machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
