"""The greedy selection loop of the sequential samplers, with a resumable journal.

A sequential sampler is a step function ``(coverage, step, rng) -> image``. The loop
starts from the labeled images (or one seeded random image), asks for one image per step,
records the coverage radius after each pick, and appends picks to a journal file so an
interrupted selection resumes: on restart the picks are replayed into the coverage
state in one batched update (exact, see ``_coverage``) and the loop goes on. Every step
draws from its own generator seeded by (seed, step), so no generator state needs saving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from geal.coverage.state import CoverageState
from geal.errors import SelectionError
from geal.internal.progress import Progress

log = logging.getLogger(__name__)

Step = Callable[[CoverageState, int, np.random.Generator], int]


class Picks(NamedTuple):
    """Images in pick order (int64) and the coverage radius after each pick (float32)."""

    order: np.ndarray
    radius: np.ndarray


def step_rng(seed: int, step: int, salt: int = 0) -> np.random.Generator:
    """The generator of one step: independent of every other step and of chunking."""
    return np.random.default_rng([int(seed), int(step), int(salt)])


def check_budget(n_selectable: int, budget: int) -> None:
    if budget < 1:
        raise SelectionError(f"budget must be at least 1, got {budget}")
    if budget > n_selectable:
        raise SelectionError(
            f"budget {budget} is larger than the {n_selectable} images that can be picked"
        )


class Journal:
    """Append-only record of picks: a JSON header line, then ``index radius`` lines."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = header
        self._f: Any = None
        self._last_sync = 0.0

    def replay(self) -> tuple[list[int], list[float]]:
        """Picks recorded by an earlier run with the same header (else none)."""
        if not self.path.exists():
            return [], []
        order: list[int] = []
        radius: list[float] = []
        with open(self.path) as f:
            first = f.readline()
            try:
                if json.loads(first) != self.header:
                    log.info("journal %s belongs to another selection; starting afresh", self.path)
                    return [], []
            except json.JSONDecodeError:
                return [], []
            for line in f:
                parts = line.split()
                if len(parts) != 2 or not line.endswith("\n"):
                    break  # a torn last line from a crash
                order.append(int(parts[0]))
                radius.append(float(parts[1]))
        return order, radius

    def open(self, order: list[int], radius: list[float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(self.header) + "\n")
            f.writelines(f"{i} {r!r}\n" for i, r in zip(order, radius, strict=True))
        os.replace(tmp, self.path)
        self._f = open(self.path, "a")  # noqa: SIM115 - closed in close()

    def append(self, index: int, radius: float) -> None:
        self._f.write(f"{index} {radius!r}\n")
        now = time.monotonic()
        if now - self._last_sync > 1.0:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._last_sync = now

    def close(self, remove: bool) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if remove:
            self.path.unlink(missing_ok=True)


def greedy(
    cov: CoverageState,
    budget: int,
    step: Step,
    *,
    strategy: str,
    seed: int,
    labeled: Sequence[int] | None,
    params: dict[str, Any],
    journal: Path | None = None,
    journal_key: dict[str, Any] | None = None,
    progress: bool | None = None,
    first_random: bool = True,
) -> Picks:
    """Run ``step`` until ``budget`` images are picked; see the module docstring.

    ``first_random``: with no labeled images, the first pick is a seeded random image
    (GEAL, k-center); samplers whose rule is defined on an empty set pass False.
    """
    labeled = sorted({int(i) for i in labeled or []})
    for i in labeled:
        if not 0 <= i < cov.n:
            raise SelectionError(f"labeled index {i} is outside the pool (0..{cov.n - 1})")
    labeled = [i for i in labeled if cov.counts[i] > 0]
    check_budget(int((cov.counts > 0).sum()) - len(labeled), budget)
    jr = None
    order: list[int] = []
    radius: list[float] = []
    if journal is not None:
        # the labeled set itself, not its size: another set of the same size must not
        # replay picks that may now be labeled
        lab_key = hashlib.sha256(np.asarray(labeled, np.int64).tobytes()).hexdigest()[:16]
        header = {
            "strategy": strategy,
            "seed": seed,
            "params": params,
            "labeled": [len(labeled), lab_key],
        }
        header.update(journal_key or {})
        jr = Journal(journal, header)
        order, radius = jr.replay()
        order, radius = order[:budget], radius[:budget]
        if order:
            log.info("resuming %s selection at pick %d of %d", strategy, len(order), budget)
    if labeled:
        cov.add(labeled)
    if order:
        cov.add(order)
    if jr is not None:
        jr.open(order, radius)
    try:
        with Progress(
            budget, initial=len(order), unit="pick", desc=strategy, progress=progress
        ) as bar:
            for t in range(len(order), budget):
                rng = step_rng(seed, t)
                if t == 0 and not labeled and first_random:
                    left = np.flatnonzero(cov.selectable)
                    i = int(left[rng.integers(left.size)])
                else:
                    i = step(cov, t, rng)
                cov.add([i])
                r = cov.radius()
                order.append(i)
                radius.append(r)
                if jr is not None:
                    jr.append(i, r)
                bar.update(1)
    finally:
        if jr is not None:
            jr.close(remove=False)  # the caller removes it once the ranking is saved
    return Picks(np.array(order, np.int64), np.array(radius, np.float32))
