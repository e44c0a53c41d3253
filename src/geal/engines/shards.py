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

from geal.bank import NO_KEPT, BankWriter, ReusableRows, ReusedRow
from geal.internal.content import ContentKeys
from geal.pools.base import Pool

log = logging.getLogger(__name__)

# Storage dtype of the patterns (the bank's ``dtype`` option) -> numpy type.
STORAGE_DTYPES: dict[str, type[np.floating[Any]]] = {
    "float16": np.float16,
    "float32": np.float32,
}


class ShardAssembler:
    """Collects per-image results in any order and writes each shard once it is complete.

    Images whose result is already known need no engine: those that could not be read
    when their content was keyed (``keys.errors``) and those whose content key is in
    ``reuse``, the rows of an earlier bank made with the same options. A shard takes them
    in when its first extracted image arrives (or at once, through :meth:`fill_known`,
    when it needs no extraction), so at most the shards in progress sit in memory.

    Args:
        writer: the bank being filled.
        missing: ids of the shards still to write; every image of them must arrive once.
        dim: pattern width D.
        dtype: storage dtype name, a key of :data:`STORAGE_DTYPES`.
        pool: the images; gives each row its id (and failures their id and path).
        keys: content keys of the images of the missing shards, recorded in each row.
        reuse: rows of earlier banks, by content key.
    """

    def __init__(
        self,
        writer: BankWriter,
        missing: Sequence[int],
        dim: int,
        dtype: str,
        *,
        pool: Pool | None = None,
        keys: ContentKeys | None = None,
        reuse: ReusableRows | None = None,
    ):
        self.writer = writer
        self.size = writer.shard_size
        self.ranges = {k: writer.shard_range(k) for k in missing}
        self.dim = dim
        self.np_dtype = STORAGE_DTYPES[dtype]
        self.pool = pool
        self.keys = keys
        self.reuse = reuse
        self.pending: dict[int, dict[str, Any]] = {}
        self.reused = 0

    # --- what is known without the model -----------------------------------------------
    def _known(self, i: int) -> ReusedRow | str | None:
        if self.keys is None:
            return None
        err = self.keys.errors.get(i)
        if err is not None:
            return err
        return self.reuse.get(self.keys.key(i)) if self.reuse is not None else None

    def to_extract(self) -> list[int]:
        """Pool indices of the missing shards that need the model, ascending."""
        return [
            i for k in sorted(self.ranges) for i in range(*self.ranges[k]) if self._known(i) is None
        ]

    def fill_known(self) -> None:
        """Write every missing shard whose images are all known without the model."""
        for k in sorted(self.ranges):
            if all(self._known(i) is not None for i in range(*self.ranges[k])):
                self._open(k)

    # --- collecting -------------------------------------------------------------------
    def _open(self, k: int) -> dict[str, Any]:
        if k in self.pending:
            return self.pending[k]
        a, b = self.ranges[k]
        acc: dict[str, Any] = {
            "left": b - a,
            "patterns": [None] * (b - a),
            "global": [None] * (b - a),
            "kept": np.full(b - a, NO_KEPT, dtype=np.int32),
            "failed": [],
        }
        self.pending[k] = acc
        for i in range(a, b):
            known = self._known(i)
            if isinstance(known, str):
                self._fail(acc, i, known)
            elif known is not None:
                self.reused += 1
                if known.failed is not None:
                    self._fail(acc, i, _moved(known.failed, self._item_path(i)), quiet=True)
                else:
                    self._put(acc, i, known.patterns, known.global_, known.kept)
        self._check(k)
        return acc

    def _item_path(self, i: int) -> str | None:
        return self.pool[i].path if self.pool is not None else None

    def _fail(self, acc: dict[str, Any], i: int, reason: str, *, quiet: bool = False) -> None:
        item = self.pool[i] if self.pool is not None else None
        if not quiet:
            log.warning(
                "skipping unreadable image %s: %s", (item.path or item.id) if item else i, reason
            )
        acc["kept"][self._slot(i)] = 0
        acc["failed"].append(
            {
                "index": i,
                "id": item.id if item else str(i),
                "path": item.path if item else None,
                "reason": reason,
            }
        )
        acc["left"] -= 1

    def _put(
        self,
        acc: dict[str, Any],
        i: int,
        patterns: np.ndarray,
        global_: np.ndarray | None,
        kept: int,
    ) -> None:
        j = self._slot(i)
        acc["patterns"][j] = patterns.astype(self.np_dtype)
        acc["global"][j] = global_.astype(self.np_dtype) if global_ is not None else None
        acc["kept"][j] = kept
        acc["left"] -= 1

    def _slot(self, i: int) -> int:
        """Row of image ``i`` within its shard."""
        return i - self.ranges[i // self.size][0]

    def _check(self, k: int) -> None:
        if self.pending[k]["left"] == 0:
            self._flush(k, self.pending.pop(k))

    def failed(self, pool: Pool, i: int, reason: str) -> None:
        """Record that image ``i`` could not be read; it gets zero patterns."""
        if self.pool is None:
            self.pool = pool
        k = i // self.size
        self._fail(self._open(k), i, reason)
        self._check(k)

    def add(self, i: int, patterns: np.ndarray, global_: np.ndarray, kept: int) -> None:
        """Record image ``i``'s patterns ``[k, D]``, global feature ``[D]`` and the
        number of tokens its patterns were fitted on."""
        k = i // self.size
        self._put(self._open(k), i, patterns, global_, kept)
        self._check(k)

    def _flush(self, k: int, acc: dict[str, Any]) -> None:
        a, b = self.ranges[k]
        empty = np.zeros((0, self.dim), dtype=self.np_dtype)
        zero = np.zeros(self.dim, dtype=self.np_dtype)
        pats = [p if p is not None else empty for p in acc["patterns"]]
        counts = np.array([p.shape[0] for p in pats], dtype=np.int32)
        patterns = np.concatenate(pats) if pats else empty
        glob = np.stack([g if g is not None else zero for g in acc["global"]])
        failed = sorted(acc["failed"], key=lambda f: f["index"])
        self.writer.write(
            k, counts, patterns, glob, failed, kept=acc["kept"],
            keys=self.keys.keys[a:b] if self.keys is not None else None,
            stat=self.keys.stat[a:b] if self.keys is not None else None,
            ids=[self.pool[i].id for i in range(a, b)] if self.pool is not None else None,
        )  # fmt: skip


def _moved(failure: dict[str, Any], path: str | None) -> str:
    """A reused failure's reason, naming the image's current file where it named the old."""
    reason = str(failure.get("reason", ""))
    old = failure.get("path")
    return reason.replace(old, path) if old and path and old != path else reason
