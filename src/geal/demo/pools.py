"""The pools ``geal demo`` runs on: real labelled images that install offline.

- ``builtin``: the sample images shipped in foolbox and scikit-image
  (:mod:`geal.pools.builtin`), 119 images of six sources; installs with
  ``pip install 'geal[demo]'``.
- ``fashion-mnist``: the first ``limit`` training images of Fashion-MNIST from the
  Debian package ``dataset-fashion-mnist``, read with the IDX reader. A fixed prefix
  keeps the demo's pool indices equal to the full training set's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from geal.errors import PoolError
from geal.pools.base import Pool

logger = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LIMIT = 1000
DEMO_POOLS = ("builtin", "fashion-mnist")


def open_demo_pool(name: str, *, limit: int | None = None) -> Pool:
    """Open the demo pool ``name`` (see module doc).

    Args:
        name: ``builtin`` or ``fashion-mnist``.
        limit: keep the first ``limit`` images (default: all of ``builtin``, the first
            1,000 of ``fashion-mnist``, which keeps the demo within a few minutes on two
            CPU cores).

    Raises:
        PoolError: unknown name, or the pool's package is not installed (says how).
    """
    if name == "builtin":
        from geal.pools.builtin import open_builtin_pool

        pool = open_builtin_pool()
    elif name == "fashion-mnist":
        pool = _fashion_mnist(FASHION_MNIST_DIR)
        pool.meta["source"] = "fashion-mnist"
        limit = FASHION_MNIST_LIMIT if limit is None else limit
    else:
        raise PoolError(f"unknown demo pool {name!r}; use one of: {', '.join(DEMO_POOLS)}")
    if limit is not None:
        pool = first(pool, limit)
    return pool


def _fashion_mnist(folder: Path) -> Pool:
    from geal.pools.idx import read_idx_pool

    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        raise PoolError(
            f"the fashion-mnist demo pool needs {folder}: apt-get install dataset-fashion-mnist"
        )
    return read_idx_pool(folder, split="train")


def first(pool: Pool, limit: int) -> Pool:
    """The pool's first ``limit`` images (see :meth:`geal.pools.base.Pool.head`)."""
    if limit < 1:
        raise PoolError(f"--limit must be at least 1, not {limit}")
    if limit < len(pool):
        logger.info("demo pool %s: first %d of %d images", pool.root, limit, len(pool))
    return pool.head(limit)
