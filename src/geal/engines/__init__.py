"""Extraction engines: what fills a bank's missing shards, and by name which one does.

An engine is a module with a function ``run(job: ExtractJob) -> None``: it decodes the
images ``job.todo`` (those of the missing shards that need the model), encodes them
with :func:`geal.engines.encode.encode_batch`, each seeded by ``job.seeds_of``, and hands
every image to ``job.assembler()`` (a :class:`geal.engines.shards.ShardAssembler`),
which writes the shards. Since all engines share those two pieces, they write the same
bank for the same pool and options.

``ENGINES`` maps an engine name to its module, imported only when that engine is asked
for, so optional dependencies (Ray) are needed only by the runs that use them:

- ``local``: DataLoader decoding workers and the model in this process.
- ``ray``: Ray Data decoding tasks feeding an actor pool of the model (``geal[ray]``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from geal.errors import GealError

if TYPE_CHECKING:
    from geal.backbones import Backbone
    from geal.bank import BankWriter
    from geal.engines.shards import ShardAssembler
    from geal.pools.base import Pool


@dataclass(frozen=True)
class ExtractJob:
    """Everything an engine needs to fill the missing shards of one bank.

    Attributes:
        pool: the images.
        backbone: the frozen model, already on its device.
        writer: the bank being filled; its manifest fixes the shard layout.
        missing: ids of the shards still to write, ascending.
        options: the bank's options (``threshold``, ``clusters``, ``seed``,
            ``precision``, ``dtype``, ``max_iter``, ``tol``, ...), as in its manifest.
        batch_size: images per forward pass; does not change the bank.
        workers: decoding processes of the local engine (None: its default).
        progress: show a progress bar (None: when stderr is a terminal).
        device: the device asked for (``auto``, ``cpu``, ``cuda``...); the Ray engine
            uses GPUs for its model actors unless it is ``cpu``.
        indices: pool indices to run through the model, ascending (None: every image of
            the missing shards); the others are already known to ``shards``.
        seeds: uint64 ``[N]`` per-image seed keys of the k-means draws (the images'
            content keys, :func:`geal.internal.content.seed_of`); None: the pool index.
        keys: uint8 ``[N, 32]`` the images' content keys (None: not known); lets an engine
            that reads a pool's files itself match what it read to pool indices.
        shards: the assembler writing the missing shards (None: a plain one).
    """

    pool: Pool
    backbone: Backbone
    writer: BankWriter
    missing: Sequence[int]
    options: Mapping[str, Any]
    batch_size: int
    workers: int | None = None
    progress: bool | None = None
    device: str = "auto"
    indices: Sequence[int] | None = None
    seeds: np.ndarray | None = None
    keys: np.ndarray | None = None
    shards: ShardAssembler | None = None

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """Pool index ranges ``[a, b)`` of the missing shards, in order."""
        return [self.writer.shard_range(k) for k in self.missing]

    @property
    def todo(self) -> list[int]:
        """Pool indices to run through the model, ascending."""
        if self.indices is not None:
            return list(self.indices)
        return [i for a, b in self.ranges for i in range(a, b)]

    @property
    def total(self) -> int:
        """Number of images to extract."""
        return len(self.indices) if self.indices is not None else sum(b - a for a, b in self.ranges)

    def by_shard(self) -> list[list[int]]:
        """:attr:`todo` cut at shard boundaries (a batch never straddles two shards)."""
        groups: dict[int, list[int]] = {}
        for i in self.todo:
            groups.setdefault(i // self.writer.shard_size, []).append(i)
        return [groups[k] for k in sorted(groups)]

    def seeds_of(self, indices: Sequence[int]) -> list[int]:
        """The k-means seed keys of pool images ``indices``."""
        if self.seeds is None:
            return [int(i) for i in indices]
        return [int(self.seeds[i]) for i in indices]

    def assembler(self) -> ShardAssembler:
        """The shard assembler every result goes to."""
        if self.shards is not None:
            return self.shards
        from geal.engines.shards import ShardAssembler

        return ShardAssembler(
            self.writer, self.missing, self.backbone.dim, self.options["dtype"], pool=self.pool
        )


Engine = Callable[[ExtractJob], None]

ENGINES: dict[str, str] = {"local": "geal.engines.local", "ray": "geal.engines.ray"}


def get_engine(name: str) -> Engine:
    """The ``run`` function of the engine called ``name``.

    Raises:
        GealError: no engine has that name.
    """
    if name not in ENGINES:
        raise GealError(f"unknown --engine {name!r}; use {' or '.join(ENGINES)}")
    return cast(Engine, importlib.import_module(ENGINES[name]).run)


__all__ = ["ENGINES", "Engine", "ExtractJob", "get_engine"]
