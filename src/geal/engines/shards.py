"""Per-image results -> complete bank shards, whatever order the images finish in.

Both engines hand every image's patterns (or the reason it could not be read) to a
:class:`ShardAssembler`; it writes a shard through :class:`geal.bank.BankWriter` as soon
as all of that shard's images are in. Workers may finish out of order (DataLoader
prefetching, Ray actors), so this is the one place that turns a stream of images into
the bank's fixed shard layout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from geal.bank import BankWriter
from geal.pools.base import Pool

log = logging.getLogger(__name__)

# Storage dtype of the patterns (the bank's ``dtype`` option) -> numpy type.
STORAGE_DTYPES: dict[str, type[np.floating[Any]]] = {
    "float16": np.float16,
    "float32": np.float32,
}


class ShardAssembler:
    """Collects per-image results in any order and writes each shard once it is complete.

    Args:
        writer: the bank being filled.
        missing: ids of the shards still to write; every image of them must arrive once.
        dim: pattern width D.
        dtype: storage dtype name, a key of :data:`STORAGE_DTYPES`.
    """

    def __init__(self, writer: BankWriter, missing: Sequence[int], dim: int, dtype: str):
        self.writer = writer
        self.size = writer.shard_size
        self.ranges = {k: writer.shard_range(k) for k in missing}
        self.dim = dim
        self.np_dtype = STORAGE_DTYPES[dtype]
        self.pending: dict[int, dict[str, Any]] = {}

    def _slot(self, i: int) -> dict[str, Any]:
        k = i // self.size
        if k not in self.pending:
            a, b = self.ranges[k]
            self.pending[k] = {
                "left": b - a,
                "patterns": [None] * (b - a),
                "global": [None] * (b - a),
                "failed": [],
            }
        return self.pending[k]

    def _done(self, i: int) -> None:
        k = i // self.size
        acc = self.pending[k]
        acc["left"] -= 1
        if acc["left"] == 0:
            self._flush(k, self.pending.pop(k))

    def failed(self, pool: Pool, i: int, reason: str) -> None:
        """Record that image ``i`` could not be read; it gets zero patterns."""
        item = pool[i]
        log.warning("skipping unreadable image %s: %s", item.path or item.id, reason)
        self._slot(i)["failed"].append(
            {"index": i, "id": item.id, "path": item.path, "reason": reason}
        )
        self._done(i)

    def add(self, i: int, patterns: np.ndarray, global_: np.ndarray) -> None:
        """Record image ``i``'s patterns ``[k, D]`` and global feature ``[D]``."""
        acc = self._slot(i)
        j = i - self.ranges[i // self.size][0]
        acc["patterns"][j] = patterns.astype(self.np_dtype)
        acc["global"][j] = global_.astype(self.np_dtype)
        self._done(i)

    def _flush(self, k: int, acc: dict[str, Any]) -> None:
        empty = np.zeros((0, self.dim), dtype=self.np_dtype)
        zero = np.zeros(self.dim, dtype=self.np_dtype)
        pats = [p if p is not None else empty for p in acc["patterns"]]
        counts = np.array([p.shape[0] for p in pats], dtype=np.int32)
        patterns = np.concatenate(pats) if pats else empty
        glob = np.stack([g if g is not None else zero for g in acc["global"]])
        failed = sorted(acc["failed"], key=lambda f: f["index"])
        self.writer.write(k, counts, patterns, glob, failed)
