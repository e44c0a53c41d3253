"""PatternBank: ragged per-image knowledge clusters on disk.

A bank is a directory::

    bank.json                 manifest: options, pool fingerprint, N, D, dtype, shards
    shard-00000.safetensors   images [0, S): counts, patterns, global
    shard-00001.safetensors   images [S, 2S) ...
    failed.json               images that could not be read, with the reason

Shard ``k`` always holds pool indices ``[k*S, min((k+1)*S, N))``; an image that could not
be read has zero patterns. Shards are written to a temporary name and renamed, so an
interrupted extraction resumes at the first missing shard and a finished shard is never
half-written. Only safetensors and JSON are read: a bank from a stranger cannot run code.
Reading memory-maps the shards, so opening a bank costs no copy.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from geal._version import __version__
from geal.errors import BankError
from geal.internal.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

FORMAT = "geal-bank"
FORMAT_VERSION = 1
MANIFEST = "bank.json"
FAILED = "failed.json"

# Options that change the patterns: a cached bank is reused only if all of them match.
MATCH_KEYS = (
    "model",
    "weights",
    "weights_sha256",
    "image_size",
    "stage",
    "threshold",
    "clusters",
    "seed",
    "precision",
    "dtype",
    "max_iter",
    "tol",
)

_ST_DTYPES = {"F16": np.float16, "F32": np.float32, "I32": np.int32, "I64": np.int64}


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


@dataclass
class Shard:
    """One shard's arrays (memory-mapped when read from disk)."""

    start: int
    counts: np.ndarray  # int32 [n]
    patterns: np.ndarray  # [m, D]
    global_: np.ndarray | None  # [n, D]
    failed: list[dict[str, Any]]
    mm: mmap.mmap | None = None

    def release(self) -> None:
        """Drop this shard's pages from memory (they are read again from disk if needed)."""
        if self.mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            self.mm.madvise(mmap.MADV_DONTNEED)

    @property
    def stop(self) -> int:
        return self.start + int(self.counts.shape[0])


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
    def owner(self) -> np.ndarray:
        """Image index of every pattern, int64 ``[M]``."""
        return np.repeat(np.arange(self.n, dtype=np.int64), self.counts)

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
    ) -> PatternBank:
        """An in-memory bank (tests, synthetic benchmarks, library use)."""
        counts = np.asarray(counts, dtype=np.int32)
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
        return cls([Shard(0, counts, patterns, global_, [])], man)

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


# --- manifest ----------------------------------------------------------------------------
def make_manifest(
    options: dict[str, Any], pool: dict[str, Any], n: int, dim: int | None, shard_size: int
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "geal_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": options,
        "pool": pool,
        "n": n,
        "dim": dim,
        "shard_size": shard_size,
        "n_shards": (n + shard_size - 1) // shard_size,
        "complete": False,
    }


def manifest_hash(manifest: dict[str, Any]) -> str:
    keep = {k: manifest.get(k) for k in ("format_version", "options", "pool", "n", "dim")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        raise BankError(
            f"{root} is not a pattern bank (no {MANIFEST}); create one with `geal extract`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BankError(f"cannot read bank manifest {path}: {e}") from None
    if manifest.get("format") != FORMAT:
        raise BankError(f"{path} is not a geal bank manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BankError(
            f"bank {root} has format version {manifest.get('format_version')}, "
            f"this geal reads version {FORMAT_VERSION}; extract it again"
        )
    return manifest


def mismatches(
    manifest: dict[str, Any], options: dict[str, Any], pool: dict[str, Any]
) -> list[str]:
    """Human-readable differences between a bank's manifest and a request."""
    out = []
    have = manifest.get("options", {})
    for key in MATCH_KEYS:
        if have.get(key) != options.get(key):
            out.append(f"{key}: bank has {have.get(key)!r}, asked {options.get(key)!r}")
    if manifest.get("pool", {}).get("fingerprint") != pool.get("fingerprint"):
        out.append("pool: the images changed since the bank was made")
    return out


# --- shards ------------------------------------------------------------------------------
def write_shard(
    path: Path,
    start: int,
    counts: np.ndarray,
    patterns: np.ndarray,
    global_: np.ndarray | None,
    failed: list[dict[str, Any]],
) -> None:
    """Write one shard atomically (temp file + rename)."""
    from safetensors.numpy import save

    tensors = {"counts": np.ascontiguousarray(counts, dtype=np.int32)}
    tensors["patterns"] = np.ascontiguousarray(patterns)
    if global_ is not None:
        tensors["global"] = np.ascontiguousarray(global_)
    meta = {"start": str(start), "failed": json.dumps(failed)}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def read_shard(path: Path) -> Shard:
    """Memory-map one safetensors shard (header parsed here; no pickle, no copy)."""
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (hlen,) = struct.unpack("<Q", mm[:8])
        header = json.loads(mm[8 : 8 + hlen])
        base = 8 + hlen
        meta = header.pop("__metadata__", {}) or {}
        arrays: dict[str, np.ndarray] = {}
        for name, info in header.items():
            dtype = _ST_DTYPES[info["dtype"]]
            a, b = info["data_offsets"]
            shape = tuple(info["shape"])
            count = int(np.prod(shape)) if shape else 1
            arr = np.frombuffer(mm, dtype=dtype, count=count, offset=base + a)
            if arr.nbytes != b - a:
                raise ValueError(f"tensor {name} has {b - a} bytes, expected {arr.nbytes}")
            arrays[name] = arr.reshape(shape)
        start = int(meta["start"])
        failed = json.loads(meta.get("failed", "[]"))
        counts = arrays["counts"]
        patterns = arrays["patterns"]
    except (OSError, ValueError, KeyError, struct.error, json.JSONDecodeError) as e:
        raise BankError(
            f"bank shard {path} is damaged ({e}); delete it and rerun `geal extract`"
        ) from None
    if int(counts.sum()) != patterns.shape[0]:
        raise BankError(f"bank shard {path} is inconsistent; delete it and rerun `geal extract`")
    return Shard(start, counts, patterns, arrays.get("global"), failed, mm)


class BankWriter:
    """Creates or resumes a bank directory shard by shard."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = root
        self.manifest = manifest

    @classmethod
    def create_or_resume(
        cls,
        root: str | Path,
        options: dict[str, Any],
        pool: dict[str, Any],
        n: int,
        shard_size: int,
        *,
        overwrite: bool = False,
    ) -> BankWriter:
        """Start a new bank at ``root`` or resume the matching one already there.

        A bank made with other options or from a changed pool is never reused silently:
        it is a :class:`BankError` unless ``overwrite`` (then its shards are deleted).
        """
        root = Path(root)
        if (root / MANIFEST).exists():
            old = read_manifest(root)
            diff = mismatches(old, options, pool)
            if not diff and old.get("n") == n and old.get("shard_size") == shard_size:
                return cls(root, old)
            if not overwrite:
                raise BankError(
                    f"bank {root} was made with other settings ({'; '.join(diff) or 'shard size'}); "
                    "use another --out or pass --overwrite"
                )
            for p in root.glob("shard-*.safetensors"):
                p.unlink()
            (root / FAILED).unlink(missing_ok=True)
        elif root.exists() and any(root.iterdir()):
            raise BankError(
                f"{root} exists and is not a pattern bank; choose an empty or new --out"
            )
        root.mkdir(parents=True, exist_ok=True)
        manifest = make_manifest(options, pool, n, None, shard_size)
        atomic_write_json(root / MANIFEST, manifest)
        return cls(root, manifest)

    @property
    def shard_size(self) -> int:
        return int(self.manifest["shard_size"])

    def shard_range(self, k: int) -> tuple[int, int]:
        s = self.shard_size
        return k * s, min((k + 1) * s, int(self.manifest["n"]))

    def missing_shards(self) -> list[int]:
        return [
            k for k in range(self.manifest["n_shards"]) if not (self.root / shard_name(k)).exists()
        ]

    def write(
        self,
        k: int,
        counts: np.ndarray,
        patterns: np.ndarray,
        global_: np.ndarray | None,
        failed: list[dict[str, Any]],
    ) -> None:
        start, stop = self.shard_range(k)
        if counts.shape[0] != stop - start:
            raise ValueError(f"shard {k} needs {stop - start} images, got {counts.shape[0]}")
        dim = int(patterns.shape[1])
        if self.manifest.get("dim") is None:
            self.manifest["dim"] = dim
            atomic_write_json(self.root / MANIFEST, self.manifest)
        write_shard(self.root / shard_name(k), start, counts, patterns, global_, failed)

    def finish(self) -> PatternBank:
        """Mark the bank complete, write ``failed.json`` and return it opened."""
        missing = self.missing_shards()
        if missing:
            raise BankError(f"bank {self.root} still lacks shards {missing[:5]}")
        bank = PatternBank.open(self.root, require_complete=False)
        atomic_write_json(self.root / FAILED, bank.failed)
        self.manifest["complete"] = True
        self.manifest["dim"] = bank.dim
        self.manifest["n_patterns"] = bank.n_patterns
        self.manifest["n_failed"] = len(bank.failed)
        atomic_write_json(self.root / MANIFEST, self.manifest)
        bank.manifest = self.manifest
        return bank
