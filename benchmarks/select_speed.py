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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clustered_patterns, machine, measured_select, write_synthetic_bank


def child(bank: str, strategy: str, budget: int, device: str, prune: str) -> None:
    r, sec, peak = measured_select(bank, budget, strategy, prune=prune, device=device)
    out = {"strategy": strategy, "prune": prune, "seconds": round(sec, 2),
           "ms_per_pick": round(sec / budget * 1000, 3), "peak_mb_above_start": round(peak, 1),
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
        pats = clustered_patterns(a.images, a.patterns, a.dim, seed=0)
        size = write_synthetic_bank(
            bank, a.images, a.patterns, 4096, lambda i, j, _s: pats[i * a.patterns : j * a.patterns]
        )
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
