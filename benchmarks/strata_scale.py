"""strata at scale: time and peak memory at 100k and 1M images, budget 10,000; prints JSON.

    python benchmarks/strata_scale.py [--sizes 100000,1000000] [--budget 10000]
        [--candidates 64] [--dir DIR] [--keep]

The banks are ``benchmarks/scale.py``'s (5 clustered patterns x 384 dims per image,
float16, no global feature: strata works on each image's pattern mean), written to disk
and opened memory-mapped; a bank already at ``DIR/bank-N`` is reused. Each size runs in a
fresh process: ``seconds`` is opening the bank and selecting (global features, cut,
refinement, picks) and ``cpu_seconds`` the CPU time it took (all threads: on a shared
machine the wall time also counts the other processes' turns), ``peak_mb`` the process's peak RSS above its RSS before the bank was
opened (after warm-up runs on a small bank that compile every kernel), beside the bank's size on disk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clustered_patterns, machine, peak_rss_mb, reset_peak_rss, rss_mb, warm_up
from scale import DIM, K, write_bank


def child(bank: str, budget: int, candidates: int) -> None:
    import logging

    from geal.bank import PatternBank
    from geal.sampling import RunSettings, select

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    warm_up("strata", "auto")
    # and the kernels of many cells: candidate Lloyd steps and margin picks
    pats = clustered_patterns(3000, 5, 384, seed=1, dtype=np.float32)
    select(PatternBank.from_arrays(pats, np.full(3000, 5)), 100, "strata", candidates=8,
           pick="margin", run=RunSettings(progress=False))  # fmt: skip
    base = rss_mb()
    reset_peak_rss()
    t0 = time.perf_counter()
    c0 = time.process_time()
    run = RunSettings(progress=False)
    r = select(PatternBank.open(bank), budget, "strata", seed=0, run=run, candidates=candidates)
    sec = time.perf_counter() - t0
    cpu = time.process_time() - c0
    meta = {k: v for k, v in r.params.items() if k in ("pick", "effective_dimension")}
    print(json.dumps({"seconds": sec, "cpu_seconds": cpu, "peak_mb": peak_rss_mb() - base,
                      "meta": meta}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--budget", type=int, default=10000)
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--dir", default=None, help="where the banks live (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the banks written")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]), int(a.child[2]))
        return
    rows = []
    tmp = tempfile.mkdtemp(dir=a.dir) if a.dir is None or not a.keep else a.dir
    for n in [int(s) for s in a.sizes.split(",")]:
        bank = Path(tmp) / f"bank-{n}"
        t0 = time.perf_counter()
        if not (bank / "bank.json").exists():
            write_bank(bank, n)
        made = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in bank.glob("shard-*.safetensors"))
        budget = min(a.budget, n)
        cmd = [sys.executable, __file__, "--child", str(bank), str(budget), str(a.candidates)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        meta = out["meta"]
        rows.append({
            "images": n, "patterns": n * K, "bank_mb": round(size / 2**20, 1), "budget": budget,
            "candidates": a.candidates, "seconds": round(out["seconds"], 1),
            "cpu_seconds": round(out["cpu_seconds"], 1),
            "peak_mb": round(out["peak_mb"], 1),
            "peak_over_bank": round(out["peak_mb"] / (size / 2**20), 2),
            "pick": meta.get("pick"), "bank_write_seconds": round(made, 1),
            "log": [ln for ln in res.stderr.splitlines() if "strata" in ln],
        })  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if not a.keep:
            for p in bank.glob("*"):
                p.unlink()
            bank.rmdir()
    print(json.dumps({"benchmark": "strata_scale", "patterns_per_image": K, "dim": DIM,
                      "dtype": "float16", "machine": machine(), "rows": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
