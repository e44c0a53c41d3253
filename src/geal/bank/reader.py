"""PatternBank: a bank directory opened for reading (shards memory-mapped)."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geal.bank.manifest import FORMAT, FORMAT_VERSION, combine_digests, manifest_hash, read_manifest
from geal.bank.shards import Shard, read_shard, shard_name
from geal.errors import BankError

log = logging.getLogger(__name__)


class PatternBank:
    """Ragged per-image patterns: ``patterns[M, D]``, ``offsets[N+1]``, optional ``global[N, D]``.

    Build one with :meth:`open` (a bank directory) or :meth:`from_arrays` (in memory).
    Row ``i`` of the bank is pool index ``i``.
    """

    def __init__(self, shards: list[Shard], manifest: dict[str, Any], root: Path | None = None):
        if not shards:
            raise BankError("a bank needs at least one shard")
        self.shards = shards
        self.manifest = manifest
        self.root = root
        self.counts = np.concatenate([s.counts for s in shards]).astype(np.int64)
        self.offsets = np.zeros(self.counts.shape[0] + 1, dtype=np.int64)
        np.cumsum(self.counts, out=self.offsets[1:])
        self._shard_starts = [s.start for s in shards]
        self._pattern_starts = [0]
        for s in shards:
            self._pattern_starts.append(self._pattern_starts[-1] + int(s.patterns.shape[0]))
        self.dim = int(shards[0].patterns.shape[1])

    # --- shape ------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Images in the bank (the pool size)."""
        return int(self.counts.shape[0])

    @property
    def n_patterns(self) -> int:
        return int(self.offsets[-1])

    @property
    def valid(self) -> np.ndarray:
        """Images with at least one pattern (unreadable images have none)."""
        return self.counts > 0

    @property
    def has_global(self) -> bool:
        return all(s.global_ is not None for s in self.shards)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [f for s in self.shards for f in s.failed]

    @property
    def ids(self) -> list[str] | None:
        """Image id of every row, as the pool named them; None for banks built from arrays."""
        if any(s.ids is None for s in self.shards):
            return None
        return [i for s in self.shards for i in s.ids or ()]

    @property
    def owner(self) -> np.ndarray:
        """Image index of every pattern, int64 ``[M]``."""
        return np.repeat(np.arange(self.n, dtype=np.int64), self.counts)

    @property
    def content_sha256(self) -> str:
        """sha256 of the bank's content: over its shards' content digests, in order.

        The same patterns, global features, image keys, ids and failures give the same
        hash, whatever the file times or the directory; recorded in ``bank.json``.
        """
        recorded = self.manifest.get("content_sha256")
        if isinstance(recorded, str):
            return recorded
        return combine_digests([s.content_digest() for s in self.shards])

    @property
    def kept_tokens(self) -> np.ndarray | None:
        """Tokens each image's patterns were fitted on, int64 ``[N]``: how many tokens
        hold the attention mass the filter keeps (0 for unreadable images). ``None``
        when a shard does not record it or a row is unknown (a row reused from a bank
        made before it was recorded): extracting into a fresh ``--out`` records it."""
        if any(s.kept is None for s in self.shards):
            return None
        kept = np.concatenate([s.kept for s in self.shards if s.kept is not None])
        if (kept < 0).any():
            return None
        return kept.astype(np.int64)

    # --- access -----------------------------------------------------------------------
    def iter_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_pattern, patterns)`` shard by shard, without copying."""
        for start, s in zip(self._pattern_starts, self.shards, strict=False):
            yield start, s.patterns

    def pattern_blocks(self) -> list[np.ndarray]:
        """The shards' pattern arrays in order (memory-mapped views, no copy)."""
        return [s.patterns for s in self.shards]

    def release_block(self, k: int) -> None:
        """Let shard ``k``'s pages go once a reader has finished with them."""
        self.shards[k].release()

    def patterns_array(self, dtype: Any = np.float32) -> np.ndarray:
        """All patterns as one array ``[M, D]`` (a copy; small banks and tests)."""
        return np.concatenate([s.patterns for s in self.shards]).astype(dtype, copy=False)

    def patterns_of(self, i: int) -> np.ndarray:
        """Patterns of image ``i`` ``[k_i, D]`` (a view)."""
        k = bisect.bisect_right(self._shard_starts, i) - 1
        s = self.shards[k]
        a = int(self.offsets[i] - self._pattern_starts[k])
        return s.patterns[a : a + int(self.counts[i])]

    def global_features(self, dtype: Any = np.float32) -> np.ndarray:
        """One feature per image ``[N, D]``: the model's global token, else the pattern mean."""
        if self.has_global:
            return np.concatenate([s.global_ for s in self.shards if s.global_ is not None]).astype(
                dtype
            )
        # shard by shard: an image's patterns are contiguous, so one reduceat sums them;
        # float64 sums of a shard at a time, the result written in ``dtype`` (no N x D
        # float64 array), each shard's pages let go once read
        out = np.zeros((self.n, self.dim), dtype=dtype)
        for k, s in enumerate(self.shards):
            counts = s.counts.astype(np.int64)
            full = np.flatnonzero(counts > 0)  # images with no pattern keep a zero row
            if full.size:
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[full]
                sums = np.add.reduceat(s.patterns, starts, axis=0, dtype=np.float64)
                out[s.start + full] = sums / counts[full, None]
            self.release_block(k)
        return out

    def manifest_hash(self) -> str:
        """sha256 of the manifest's content-defining part (not timestamps)."""
        return manifest_hash(self.manifest)

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        patterns: np.ndarray,
        counts: np.ndarray,
        global_: np.ndarray | None = None,
        manifest: dict[str, Any] | None = None,
        kept: np.ndarray | None = None,
    ) -> PatternBank:
        """An in-memory bank (tests, synthetic benchmarks, library use)."""
        counts = np.asarray(counts, dtype=np.int32)
        if kept is not None:
            kept = np.asarray(kept, dtype=np.int32)
            if kept.shape != counts.shape:
                raise ValueError("kept must be [len(counts)]")
        patterns = np.asarray(patterns)
        if patterns.ndim != 2 or int(counts.sum()) != patterns.shape[0]:
            raise ValueError("patterns must be [sum(counts), D]")
        man = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n": int(counts.shape[0]),
            "dim": int(patterns.shape[1]),
            "options": {},
        }
        man.update(manifest or {})
        return cls([Shard(0, counts, patterns, global_, [], kept=kept)], man)

    @classmethod
    def open(cls, root: str | Path, *, require_complete: bool = True) -> PatternBank:
        """Open a bank directory, memory-mapping its shards."""
        root = Path(root)
        manifest = read_manifest(root)
        if require_complete and not manifest.get("complete"):
            raise BankError(
                f"bank {root} is incomplete (extraction was interrupted); "
                "rerun the same `geal extract` command to resume it"
            )
        shards = []
        for k in range(manifest["n_shards"]):
            path = root / shard_name(k)
            if not path.exists():
                raise BankError(f"bank {root} lacks {path.name}; rerun `geal extract` to finish it")
            shards.append(read_shard(path))
        bank = cls(shards, manifest, root)
        if bank.n != manifest["n"]:
            raise BankError(f"bank {root} holds {bank.n} images, its manifest says {manifest['n']}")
        return bank
