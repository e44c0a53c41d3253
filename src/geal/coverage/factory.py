"""``make_coverage``: the exact coverage state for a set of ragged per-image vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from geal.coverage.plain import Coverage
from geal.coverage.pruned import PrunedCoverage
from geal.coverage.state import DEFAULT_CHUNK, PRUNE_MIN_PATTERNS
from geal.errors import SelectionError
from geal.internal.device import resolve_device

PRUNE_CHOICES = ("auto", "on", "off")


def uses_pruning(patterns: int, *, distance: str, device: str, prune: str) -> bool:
    """Whether :func:`make_coverage` builds the pruned state for this many patterns.

    ``auto`` prunes on the CPU with the cosine distance from :data:`PRUNE_MIN_PATTERNS`
    patterns up; ``on``/``off`` force it (``on`` needs the cosine distance on the CPU).
    """
    dev = resolve_device(device)
    if prune == "on":
        if distance != "cosine" or dev.type != "cpu":
            raise SelectionError("--prune on works with the cosine distance on the CPU")
        return True
    if prune == "off":
        return False
    if prune == "auto":
        return distance == "cosine" and dev.type == "cpu" and patterns >= PRUNE_MIN_PATTERNS
    raise SelectionError(f"--prune takes auto, on or off, not {prune!r}")


def make_coverage(
    blocks: list[np.ndarray],
    counts: np.ndarray,
    *,
    distance: str = "cosine",
    device: str = "cpu",
    chunk: int = DEFAULT_CHUNK,
    prune: str = "auto",
    release: Callable[[int], None] | None = None,
) -> Coverage | PrunedCoverage:
    """The coverage state for ``blocks``: exact plain passes, or exact pruned ones.

    Args:
        blocks: the vectors ``[M, D]`` in image order, in one or more blocks.
        counts: vectors per image ``[N]``.
        distance: ``cosine`` or ``euclidean``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        chunk: rows per block of a distance product (memory bound, not results).
        prune: ``auto``, ``on`` or ``off`` (see :func:`uses_pruning`). Both states give
            the same ranking (see :mod:`geal.coverage.pruned`); pruning only changes
            the time.
        release: called with a block's position after each step through it.
    """
    m = int(np.asarray(counts).sum())
    if uses_pruning(m, distance=distance, device=device, prune=prune):
        return PrunedCoverage(blocks, counts, chunk=chunk, release=release)
    dev = resolve_device(device)
    return Coverage(
        blocks, counts, distance=distance, device=str(dev), chunk=chunk, release=release
    )
