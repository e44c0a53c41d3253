"""How much of a labelled pool a selection covers: distinct classes and sources.

A selection worth annotating shows the annotator as many different kinds of image as
its size allows. On a labelled pool this is countable: the distinct classes (and, for
mixed pools, the distinct sources) among the picked images, compared with what a
uniform random pick of the same size covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geal.pools.base import Pool
from geal.sampling.random import random_pick


@dataclass(frozen=True)
class Coverage:
    """Distinct classes and sources among some images of a pool."""

    classes: int
    sources: int


def item_classes(pool: Pool) -> list[str]:
    """Class name of every pool image (``"?"`` where the pool has no label)."""
    names = pool.classes or []
    out = []
    for item in pool:
        if item.label is None:
            out.append("?")
        elif item.label < len(names):
            out.append(names[item.label])
        else:
            out.append(str(item.label))
    return out


def item_sources(pool: Pool) -> list[str]:
    """Source of every pool image: its ``subset`` in the builtin pool, else the pool's source.

    A single-source pool names its source in ``meta["source"]`` (the demo pools do), or
    is known by its format.
    """
    whole = str(pool.meta.get("source") or pool.format)
    if pool.format == "builtin":
        return [item.subset or whole for item in pool]
    return [whole] * len(pool)


def coverage(pool: Pool, indices: Sequence[int] | np.ndarray) -> Coverage:
    """Distinct classes and sources among the pool images ``indices``."""
    classes, sources = item_classes(pool), item_sources(pool)
    picked = [int(i) for i in indices]
    return Coverage(len({classes[i] for i in picked}), len({sources[i] for i in picked}))


def random_coverages(pool: Pool, size: int, seeds: Sequence[int]) -> list[Coverage]:
    """Coverage of a uniform random pick of ``size`` images, one per seed.

    The picks are :func:`geal.sampling.random.random_pick` over the whole pool: on a pool
    whose images all read, the random picks the report and ``geal demo`` show.
    """
    return [coverage(pool, random_pick(len(pool), size, s)) for s in seeds]


def median_coverage(coverages: Sequence[Coverage]) -> tuple[float, float]:
    """Median classes and median sources over several picks."""
    return (
        float(np.median([c.classes for c in coverages])),
        float(np.median([c.sources for c in coverages])),
    )


def totals(pool: Pool) -> Coverage:
    """Classes and sources of the whole pool: the most any selection can cover."""
    return coverage(pool, range(len(pool)))
