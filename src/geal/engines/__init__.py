"""Extraction engines: what fills a bank's missing shards, and by name which one does.

An engine is a module with a function ``run(job: ExtractJob) -> None``: it decodes the
images of ``job.missing`` shards, encodes them with
:func:`geal.engines.encode.encode_batch` and hands every image to a
:class:`geal.engines.shards.ShardAssembler`, which writes the shards. Since all engines
share those two pieces, they write the same bank for the same pool and options.

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

from geal.errors import GealError

if TYPE_CHECKING:
    from geal.backbones import Backbone
    from geal.bank import BankWriter
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

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """Pool index ranges ``[a, b)`` of the missing shards, in order."""
        return [self.writer.shard_range(k) for k in self.missing]

    @property
    def total(self) -> int:
        """Number of images to extract."""
        return sum(b - a for a, b in self.ranges)


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
