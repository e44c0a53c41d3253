"""Selection at scale: time and peak memory for 10k, 100k and 1M images; prints JSON.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--budget 10000]

Each bank is synthetic (5 patterns x 384 dims per image, float16, clustered as real
banks are: see ``_common.clustered_patterns``; one set of 2,000 concepts in 100 themes
for the whole bank, the select_speed bank drawn larger, shard by shard), written to disk
as a real bank and opened memory-mapped. Each (size, sampler, mode) runs in a fresh
process so its peak memory is its own: ``peak_mb`` is the process's peak RSS above its
RSS before the bank was opened (after a warm-up run on a small bank in the same mode).
``plain`` makes one pass over every pattern per pick; ``pruned`` skips the patterns
whose distance cannot change (same ranking, checked on the first picks).
A plain run whose full budget would take too long is timed on its first
``--plain-picks`` picks and extrapolated (its cost per pick is constant): the JSON says
which figures are extrapolated.

Samplers other than ``prob`` and ``fds`` (``--strategies all`` names every registered one;
``--once``: those two as well) run once each with their defaults: seconds, CPU seconds and peak memory, beside the
sampler's own up-front memory estimate. A run is given ``--memory-limit`` bytes (as
``GEAL_MEMORY_LIMIT``), so a sampler whose estimate exceeds it refuses up front with one
line, which the JSON records; a run that has used ``--timeout`` CPU seconds (all
threads) is stopped and recorded as such.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clustered_patterns, machine, measured_select_cpu, write_synthetic_bank

K, DIM = 5, 384


def write_bank(root: Path, n: int) -> int:
    return write_synthetic_bank(
        root, n, K, 8192, lambda a, b, s: clustered_patterns(b - a, K, DIM, seed=0, images_seed=s)
    )


PRUNED = ("prob", "fds")  # samplers with a plain and a pruned mode


def child(bank: str, strategy: str, budget: int, mode: str) -> None:
    from geal.errors import SelectionError

    prune = {"pruned": "on", "plain": "off"}.get(mode, "auto")
    try:
        r, sec, cpu, peak = measured_select_cpu(bank, budget, strategy, prune=prune)
    except SelectionError as e:  # a refusal up front: one line
        print(json.dumps({"refused": str(e)}))
        return
    out = {"seconds": sec, "cpu_seconds": cpu, "peak_mb": peak}
    print(json.dumps({**out, "order": r.order[:50].tolist()}))


def run_child(
    bank: Path,
    strategy: str,
    budget: int,
    mode: str,
    timeout: float | None = None,
    memory_limit: float | None = None,
) -> dict:
    cmd = [sys.executable, __file__, "--child", str(bank), strategy, str(budget), mode]
    env = dict(os.environ)
    if memory_limit is not None:
        env["GEAL_MEMORY_LIMIT"] = str(int(memory_limit))

    def cpu_limit() -> None:  # CPU seconds, not wall: a shared machine stretches the wall
        if timeout is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (int(timeout), int(timeout)))

    res = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=cpu_limit)
    if timeout is not None and res.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return {"timed_out": timeout}
    res.check_returncode()
    return json.loads(res.stdout.strip().splitlines()[-1])


def estimate(bank: Path, strategy: str, budget: int) -> int:
    """The sampler's own up-front estimate of the bytes it needs beyond the bank."""
    import geal.sampling  # noqa: F401 - registers every sampler
    from geal.bank import PatternBank
    from geal.sampling.base import SAMPLERS, BankShape

    b = PatternBank.open(bank)
    shape = BankShape(n=b.n, patterns=int(b.counts.sum()), dim=b.dim, labeled=0)
    return SAMPLERS.get(strategy).memory_bytes(shape, budget)


def once(
    bank: Path, n: int, size: int, made: float, strategy: str, budget: int, a: argparse.Namespace
) -> dict:
    """One run of ``strategy`` with its defaults (``auto`` pruning), under the limits."""
    need = estimate(bank, strategy, budget)
    out = run_child(bank, strategy, budget, "auto", a.timeout, a.memory_limit)
    row = {
        "images": n, "patterns": n * K, "bank_mb": round(size / 2**20, 1), "strategy": strategy,
        "budget": budget, "estimate_mb": round(need / 2**20, 1),
        "memory_limit_mb": round(a.memory_limit / 2**20), "bank_write_seconds": round(made, 1),
    }  # fmt: skip
    if "refused" in out:
        row["refused"] = out["refused"]
    elif "timed_out" in out:
        row["stopped_at_cpu_seconds"] = out["timed_out"]
    else:
        row.update({
            "seconds": round(out["seconds"], 1), "cpu_seconds": round(out["cpu_seconds"], 1),
            "peak_mb": round(out["peak_mb"], 1),
            "peak_over_bank": round(out["peak_mb"] / (size / 2**20), 2),
        })  # fmt: skip
    return row


def trace(bank: Path, budget: int, every: int) -> None:
    """Where a pruned FDS selection spends its time: one JSON line per ``every`` picks.

    The build's seconds first, then per window the milliseconds per pick and, per pick,
    the patterns of the groups visited and the patterns whose distance was computed.
    """
    from geal.bank import PatternBank
    from geal.sampling import RunSettings
    from geal.sampling.geal import pattern_coverage

    b = PatternBank.open(bank)
    t0 = time.perf_counter()
    cov = pattern_coverage(b, run=RunSettings(prune="on"))
    print(json.dumps({"build_seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    cov.add([int(np.random.default_rng(0).integers(b.n))])
    last, visited, computed = time.perf_counter(), 0, 0
    for i in range(1, budget):
        cov.add([cov.farthest()])
        if i % every == 0:
            now = time.perf_counter()
            print(json.dumps({
                "picks": i, "ms_per_pick": round((now - last) * 1000 / every, 1),
                "visited_per_pick": (cov.visited - visited) // every,  # type: ignore[union-attr]
                "computed_per_pick": (cov.computed - computed) // every,  # type: ignore[union-attr]
                "radius": round(cov.radius(), 3),
            }), flush=True)  # fmt: skip
            last, visited, computed = now, cov.visited, cov.computed  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--budget", type=int, default=10000)
    ap.add_argument(
        "--strategies", default="prob,fds", help="comma-separated, or 'all' (every sampler)"
    )
    ap.add_argument(
        "--memory-limit",
        type=float,
        default=8e9,
        help="bytes a sampler other than prob/fds may take (GEAL_MEMORY_LIMIT)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="CPU seconds (all threads) before a run is stopped",
    )
    ap.add_argument(
        "--once",
        action="store_true",
        help="prob and fds too: one run with their defaults, not plain against pruned",
    )
    ap.add_argument(
        "--plain-picks", type=int, default=300, help="picks timed for an extrapolated plain run"
    )
    ap.add_argument(
        "--full-plain-below", type=int, default=100_001, help="pools below this run plain in full"
    )
    ap.add_argument(
        "--full-pruned-below",
        type=int,
        default=10**9,
        help="pools from this size time the pruned run on its first --pruned-picks picks",
    )
    ap.add_argument(
        "--pruned-picks",
        type=int,
        default=1000,
        help="picks timed for an extrapolated pruned run (an upper bound: its picks get "
        "cheaper as the radius shrinks)",
    )
    ap.add_argument("--dir", default=None, help="where to write the banks (default: a temp dir)")
    ap.add_argument(
        "--banks", default=None, help="keep the banks at DIR/bank-N and reuse those there"
    )
    ap.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="EVERY",
        help="instead: trace a pruned fds selection of each size, a JSON line per EVERY picks",
    )
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.plain_picks < 1 or a.pruned_picks < 1 or a.trace < 0:
        ap.error("--plain-picks and --pruned-picks must be at least 1, --trace at least 0")
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]), a.child[3])
        return
    if a.strategies == "all":
        import geal.sampling  # noqa: F401 - registers every sampler
        from geal.sampling.base import SAMPLERS

        names = sorted(SAMPLERS.names())
    else:
        names = a.strategies.split(",")
    rows = []
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        for n in [int(s) for s in a.sizes.split(",")]:
            bank = Path(a.banks or tmp) / f"bank-{n}"
            t0 = time.perf_counter()
            if a.banks and (bank / "bank.json").exists():  # reuse a kept bank
                size = sum(p.stat().st_size for p in bank.glob("shard-*.safetensors"))
            else:
                size = write_bank(bank, n)
            made = time.perf_counter() - t0
            budget = min(a.budget, n)
            if a.trace:
                print(json.dumps({"images": n, "budget": budget}), flush=True)
                trace(bank, budget, a.trace)
                continue
            for strategy in names:
                if a.once or strategy not in PRUNED:
                    rows.append(once(bank, n, size, made, strategy, budget, a))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                    continue
                pruned_full = n < a.full_pruned_below
                p_picks = budget if pruned_full else min(a.pruned_picks, budget)
                pruned = run_child(bank, strategy, p_picks, "pruned")
                pruned_s = pruned["seconds"] / p_picks * budget
                full = n < a.full_plain_below
                plain = run_child(
                    bank, strategy, budget if full else min(a.plain_picks, budget), "plain"
                )
                plain_s = (
                    plain["seconds"]
                    if full
                    else plain["seconds"] / min(a.plain_picks, budget) * budget
                )
                same = (
                    pruned["order"][: len(plain["order"])] == plain["order"][: len(pruned["order"])]
                )
                rows.append({
                    "images": n, "patterns": n * K, "bank_mb": round(size / 2**20, 1), "strategy": strategy,
                    "budget": budget, "pruned_seconds": round(pruned_s, 1),
                    "pruned_extrapolated": not pruned_full,
                    "pruned_peak_mb": round(pruned["peak_mb"], 1),
                    "pruned_peak_over_bank": round(pruned["peak_mb"] / (size / 2**20), 2),
                    "plain_seconds": round(plain_s, 1), "plain_extrapolated": not full,
                    "plain_peak_mb": round(plain["peak_mb"], 1), "speedup": round(plain_s / pruned_s, 2),
                    "same_first_picks": same, "bank_write_seconds": round(made, 1),
                })  # fmt: skip
                print(json.dumps(rows[-1]), file=sys.stderr)
            if not a.banks:
                for p in bank.glob("*"):
                    p.unlink()
    if a.trace:
        return
    print(json.dumps({"benchmark": "scale", "patterns_per_image": K, "dim": DIM, "dtype": "float16",
                      "machine": machine(), "rows": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
