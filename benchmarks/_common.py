"""Shared helpers for the benchmarks: synthetic banks, memory and machine facts, results
files."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def clustered_patterns(
    n_images: int,
    per_image: int = 5,
    dim: int = 384,
    *,
    themes: int = 100,
    concepts: int = 2000,
    spread: float = 0.35,
    seed: int = 0,
    images_seed: int | None = None,
    dtype: Any = np.float16,
    chunk: int = 65536,
) -> np.ndarray:
    """Synthetic knowledge clusters with the shape of a real bank.

    Real patterns are not isotropic noise: images share visual concepts, and concepts
    come in families. Here ``concepts`` directions are drawn around ``themes`` random
    directions (a two-level hierarchy); each image takes its patterns from 1-3 concepts
    and adds Gaussian noise of relative size ``spread``. Isotropic noise would make
    every pairwise distance equal, unlike real features and the worst case for pruning.

    ``seed`` draws the concepts; ``images_seed`` (default: the same generator) draws the
    images, so a large bank can be written shard by shard over one set of concepts.
    """
    rng = np.random.default_rng(seed)
    top = rng.standard_normal((themes, dim)).astype(np.float32)
    top /= np.linalg.norm(top, axis=1, keepdims=True)
    centres = top[rng.integers(0, themes, concepts)] + 0.8 * rng.standard_normal(
        (concepts, dim)
    ).astype(np.float32) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if images_seed is not None:
        rng = np.random.default_rng([seed, images_seed])
    out = np.empty((n_images * per_image, dim), dtype=dtype)
    for a in range(0, n_images, chunk):
        b = min(a + chunk, n_images)
        n = b - a
        own = rng.integers(0, concepts, size=(n, 3))
        which = rng.integers(0, 3, size=(n, per_image))
        ids = np.take_along_axis(own, which, axis=1).reshape(-1)
        noise = rng.standard_normal((n * per_image, dim)).astype(np.float32) * (
            spread / np.sqrt(dim)
        )
        out[a * per_image : b * per_image] = (centres[ids] + noise).astype(dtype)
    return out


def warm_up(strategy: str, prune: str, device: str = "cpu") -> None:
    """Run ``strategy`` once on a small bank of the benchmark's shape, in the same mode.

    What a warm process has paid once and never again is not counted: the compiled
    kernels' loading and the linear-algebra libraries' thread buffers (tens of MB that do
    not grow with the bank). Measurements start after this.
    """
    from geal.bank import PatternBank
    from geal.sampling import RunSettings, select

    n = 6000  # 30,000 patterns: ``auto`` prunes, as it does on the benchmarks' banks
    pats = clustered_patterns(n, 5, 384, seed=1, dtype=np.float32)
    run = RunSettings(device=device, prune=prune, progress=False)
    select(PatternBank.from_arrays(pats, np.full(n, 5)), 50, strategy, run=run)


def write_synthetic_bank(
    root: Path, n: int, per_image: int, shard: int, draw: Callable[[int, int, int], np.ndarray]
) -> int:
    """Write a real bank of ``n`` images at ``root``; ``draw(a, b, s)`` gives the patterns
    of images ``a:b`` (shard ``s``), ``per_image`` each. Returns its bytes on disk."""
    from geal.bank import BankWriter

    w = BankWriter.create_or_resume(
        root, {"model": "synthetic"}, {"fingerprint": "synthetic"}, n, shard
    )
    for s in w.missing_shards():
        a, b = w.shard_range(s)
        w.write(s, np.full(b - a, per_image, np.int32), draw(a, b, s), None, [])
    w.finish()
    return sum(p.stat().st_size for p in root.glob("shard-*.safetensors"))


def measured_select(
    bank: str, budget: int, strategy: str, *, prune: str, device: str = "cpu"
) -> tuple[Any, float, float]:
    """After :func:`warm_up`, open ``bank`` memory-mapped and select from it.

    Returns the ranking, the seconds (open + select) and the peak RSS in MiB above the
    RSS just before the bank was opened.
    """
    r, sec, _, peak = measured_select_cpu(bank, budget, strategy, prune=prune, device=device)
    return r, sec, peak


def measured_select_cpu(
    bank: str, budget: int, strategy: str, *, prune: str, device: str = "cpu"
) -> tuple[Any, float, float, float]:
    """:func:`measured_select`, with the CPU seconds (all threads) of the selection too:
    (ranking, seconds, CPU seconds, peak MiB)."""
    from geal.bank import PatternBank
    from geal.sampling import RunSettings, select

    warm_up(strategy, prune, device)
    base = rss_mb()
    reset_peak_rss()
    t0 = time.perf_counter()
    c0 = time.process_time()
    run = RunSettings(device=device, prune=prune, progress=False)
    r = select(PatternBank.open(bank), budget, strategy, seed=0, run=run)
    return r, time.perf_counter() - t0, time.process_time() - c0, peak_rss_mb() - base


def rss_mb() -> float:
    """Current resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Start peak-RSS accounting afresh (Linux: clear VmHWM), so warm-up does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last reset, MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def read_results(path: str | Path, prog: str) -> dict[str, Any]:
    """A results file (``{"rows": [...], ...}``); a missing or malformed one: one line on
    stderr and exit status 2."""
    path = Path(path)
    if not path.is_file():
        print(f"{prog}: no such file {path}", file=sys.stderr)
        raise SystemExit(2)
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved["rows"], list):
            raise TypeError("rows is not a list")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        print(f"{prog}: {path} is not a results file with rows ({e})", file=sys.stderr)
        raise SystemExit(2) from None
    return dict(saved)


def results_rows(paths: list[str], prog: str, *, tuning_only: bool = False) -> list[dict[str, Any]]:
    """The rows of every results file in ``paths``; with ``tuning_only``, a reporting row
    among them is refused (one line, exit status 2): constants come from tuning runs."""
    rows = [r for p in paths for r in read_results(p, prog)["rows"]]
    if tuning_only and any(r.get("role") != "tuning" for r in rows):
        print(f"{prog}: only tuning rows may choose constants", file=sys.stderr)
        raise SystemExit(2)
    return rows
