"""The exact distance-coverage engine behind ``prob``, ``fds``, ``kcenter`` and ``kernelcover``.

A coverage state keeps, for every vector of a pool (an image's patterns, or one global
feature per image), its distance to the nearest vector of a picked image, and updates it
as images are picked. Distances are computed between unit vectors on a 2^-11 grid
(:mod:`geal.grid`), where float32 dot products are exact, so every state and
every ranking built on it is the same on any device, thread count or chunk size.

- :class:`Coverage` (:mod:`~geal.coverage.plain`): one pass over every vector per pick,
  on the CPU (numba) or a GPU (torch).
- :class:`PrunedCoverage` (:mod:`~geal.coverage.pruned`): the same state on the CPU,
  skipping the vectors whose distance provably cannot change.
- :func:`make_coverage` chooses between them; :func:`greedy` (:mod:`~geal.coverage.loop`)
  runs a step rule to a budget with a resumable journal.
"""

from geal.coverage.factory import PRUNE_CHOICES, make_coverage, uses_pruning
from geal.coverage.loop import Journal, Picks, Step, check_budget, greedy, step_rng
from geal.coverage.plain import Coverage
from geal.coverage.pruned import PrunedCoverage
from geal.coverage.state import (
    DEFAULT_CHUNK,
    DISTANCES,
    PRUNE_MIN_PATTERNS,
    CoverageState,
)
from geal.grid import GRID, grid_f32, quantize, to_grid

__all__ = [
    "DEFAULT_CHUNK",
    "DISTANCES",
    "GRID",
    "PRUNE_CHOICES",
    "PRUNE_MIN_PATTERNS",
    "Coverage",
    "CoverageState",
    "Journal",
    "Picks",
    "PrunedCoverage",
    "Step",
    "check_budget",
    "greedy",
    "grid_f32",
    "make_coverage",
    "quantize",
    "step_rng",
    "to_grid",
    "uses_pruning",
]
