"""What every coverage state offers, and the constants the engine shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from geal.defaults import DEFAULT_CHUNK, PRUNE_MIN_PATTERNS

__all__ = ["DEFAULT_CHUNK", "DISTANCES", "INIT", "PRUNE_MIN_PATTERNS", "CoverageState"]

DISTANCES = ("cosine", "euclidean")
INIT = 4.0  # above any cosine distance: "not covered yet"


class CoverageState(Protocol):
    """What the greedy loop needs from a coverage state (plain or pruned)."""

    counts: np.ndarray
    picked: np.ndarray

    @property
    def n(self) -> int: ...

    @property
    def selectable(self) -> np.ndarray: ...

    def add(self, images: Sequence[int]) -> None: ...

    def radius(self) -> float: ...

    def farthest(self) -> int: ...

    def draw(self, rng: np.random.Generator) -> int: ...

    def distances(self) -> np.ndarray: ...
