"""strata with candidate Lloyd steps against full ones: linear-probe accuracy on Fashion-MNIST.

    PYTHONPATH=src python benchmarks/strata_candidates.py [--budgets 200,500,1000,2000]
        [--seeds 0,1,2] [--candidates 64] [--out benchmarks/results/strata_candidates.json]

The quality harness's pool and bank (``benchmarks/quality.py``: the first 20,000
Fashion-MNIST training images, EfficientNet-Lite0 at 64 px, K = 5, cached after the first
extraction); at each budget and seed, strata with ``candidates`` (a Lloyd step moves an
image only among the centres nearest its cell's) and with every centre a candidate (the
full Lloyd step), each selection scored by the linear probe of :mod:`geal.evaluate`. One
JSON line per result as it comes, then the whole as JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from quality import DATA, MODEL, pretrained_task

FULL = 2**31 - 1  # every centre a candidate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="200,500,1000,2000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--pool-size", type=int, default=20000)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default="benchmarks/results/strata_candidates.json")
    a = ap.parse_args()
    from geal.evaluate import evaluate_selection
    from geal.sampling import RunSettings, select

    task = pretrained_task(a.data, a.pool_size, a.cache)
    bank = task.backbones[MODEL].bank()
    rows = []
    for budget in [int(b) for b in a.budgets.split(",")]:
        for seed in [int(s) for s in a.seeds.split(",")]:
            picks = {}
            for name, c in (("candidates", a.candidates), ("full", FULL)):
                t0, c0 = time.perf_counter(), time.process_time()
                r = select(bank, budget, "strata", seed=seed, run=RunSettings(), candidates=c)
                sec, cpu = time.perf_counter() - t0, time.process_time() - c0
                acc = evaluate_selection(task, r.order[:budget], "linear", seed, backbone=MODEL)
                picks[name] = set(r.order[:budget].tolist())
                rows.append({
                    "budget": budget, "seed": seed, "lloyd": name,
                    "candidates": c if c != FULL else None, "accuracy": round(acc, 4),
                    "select_seconds": round(sec, 1), "select_cpu_seconds": round(cpu, 1),
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
            shared = len(picks["candidates"] & picks["full"]) / budget
            rows[-1]["picks_shared"] = rows[-2]["picks_shared"] = round(shared, 3)
    summary = []
    for budget in sorted({r["budget"] for r in rows}):
        acc = {
            m: [r["accuracy"] for r in rows if r["budget"] == budget and r["lloyd"] == m]
            for m in ("candidates", "full")
        }
        summary.append({
            "budget": budget,
            **{f"{m}_mean": round(float(np.mean(v)), 4) for m, v in acc.items()},
            **{f"{m}_std": round(float(np.std(v)), 4) for m, v in acc.items()},
            "mean_difference": round(float(np.mean(acc["candidates"]) - np.mean(acc["full"])), 4),
        })  # fmt: skip
    doc = {"benchmark": "strata_candidates", "pool": a.pool_size, "protocol": "linear",
           "candidates": a.candidates, "machine": machine(), "summary": summary, "rows": rows}  # fmt: skip
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
