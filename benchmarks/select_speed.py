"""Selection speed and memory on a VOC07+12-shaped bank; prints JSON.

    python benchmarks/select_speed.py [--images 16551] [--budget 3000] [--device cpu]

The bank (16,551 images x 5 patterns x 384 dims, float16, clustered synthetic patterns:
see ``_common.clustered_patterns``) is written to a temporary directory as a real bank
and opened memory-mapped, as `geal select` would. Each strategy runs in a fresh process
so its peak memory is its own; memory is reported as peak RSS above the process's
resident size just before the bank is opened, next to the bank's size on disk.
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
from _common import (
    clustered_patterns,
    machine,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    warm_up,
)


def write_bank(root: Path, n: int, k: int, dim: int) -> int:
    from geal.bank import BankWriter

    pats = clustered_patterns(n, k, dim, seed=0)
    w = BankWriter.create_or_resume(
        root, {"model": "synthetic"}, {"fingerprint": "synthetic"}, n, 4096
    )
    for s in w.missing_shards():
        a, b = w.shard_range(s)
        w.write(s, np.full(b - a, k, np.int32), pats[a * k : b * k], None, [])
    w.finish()
    return sum(p.stat().st_size for p in root.glob("shard-*.safetensors"))


def child(bank: str, strategy: str, budget: int, device: str, prune: str) -> None:
    from geal.bank import PatternBank
    from geal.sampling import select

    warm_up(strategy, prune, device)
    base = rss_mb()
    reset_peak_rss()
    t0 = time.perf_counter()
    b = PatternBank.open(bank)
    r = select(b, budget, strategy, seed=0, device=device, progress=False, prune=prune)
    sec = time.perf_counter() - t0
    out = {"strategy": strategy, "prune": prune, "seconds": round(sec, 2),
           "ms_per_pick": round(sec / budget * 1000, 3), "peak_mb_above_start": round(peak_rss_mb() - base, 1),
           "final_radius": float(r.radius[-1])}  # fmt: skip
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16551)
    ap.add_argument("--patterns", type=int, default=5)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--strategies", default="prob,fds,kernelcover")
    ap.add_argument(
        "--prune", default="auto", help="comma list of prune modes to compare (auto, off, on)"
    )
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]), a.device, a.child[3])
        return
    with tempfile.TemporaryDirectory() as tmp:
        bank = Path(tmp) / "bank"
        size = write_bank(bank, a.images, a.patterns, a.dim)
        runs = []
        for strategy in a.strategies.split(","):
            for prune in a.prune.split(","):
                cmd = [
                    sys.executable,
                    __file__,
                    "--device",
                    a.device,
                    "--child",
                    str(bank),
                    strategy,
                    str(a.budget),
                    prune,
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(json.dumps({
        "benchmark": "select_speed",
        "bank": {"images": a.images, "patterns_per_image": a.patterns, "dim": a.dim, "dtype": "float16",
                 "mb_on_disk": round(size / 2**20, 1), "kind": "clustered synthetic"},
        "budget": a.budget, "device": a.device, "machine": machine(), "runs": runs,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
