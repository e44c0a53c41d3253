"""PatternBank: ragged per-image knowledge clusters on disk.

A bank is a directory::

    bank.json                 manifest: options, pool, N, D, dtype, shards, content hash
    shard-00000.safetensors   images [0, S): counts, patterns, global, keys, stat, ids
    shard-00001.safetensors   images [S, 2S) ...
    failed.json               images that could not be read, with the reason

Shard ``k`` always holds pool indices ``[k*S, min((k+1)*S, N))``; an image that could not
be read has zero patterns. Shards are written to a temporary name and renamed, so an
interrupted extraction resumes at the first missing shard and a finished shard is never
half-written. Only safetensors and JSON are read: a bank from a stranger cannot run code.
Reading memory-maps the shards, so opening a bank costs no copy.

Each row also records its image's id, content key (sha256 of the image,
:mod:`geal.internal.content`) and the (size, mtime_ns) its file had when hashed. When
the pool behind a bank changes, :meth:`BankWriter.prepare` builds the new bank beside
the old one, reusing the rows of every image whose key it holds (an image's patterns
depend only on its content and the options), and renames it into place when complete.

The same inputs give byte-identical shards (tensors and metadata in a fixed order), and
the manifest's ``content_sha256`` hashes what the shards hold (not file times), so two
banks with the same patterns, keys, ids and failures have the same hash.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import mmap
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from geal._version import __version__
from geal.errors import BankError
from geal.internal.content import KEY_BYTES, NO_KEY
from geal.internal.io import atomic_open, atomic_write_json
from geal.internal.lock import file_lock

log = logging.getLogger(__name__)

FORMAT = "geal-bank"
# 2: rows carry content keys, k-means is seeded by them, shards are byte-reproducible.
FORMAT_VERSION = 2
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
# What makes a pool the same pool (its images may still change).
POOL_IDENTITY = ("root", "format", "split")

_ST_DTYPES = {
    "F16": np.float16,
    "F32": np.float32,
    "I32": np.int32,
    "I64": np.int64,
    "U8": np.uint8,
}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


@dataclass
class Shard:
    """One shard's arrays (memory-mapped when read from disk).

    ``keys`` (uint8 ``[n, 32]``), ``stat`` (int64 ``[n, 2]``) and ``ids`` describe each
    row's image; they are ``None`` in banks built from arrays.
    """

    start: int
    counts: np.ndarray  # int32 [n]
    patterns: np.ndarray  # [m, D]
    global_: np.ndarray | None  # [n, D]
    failed: list[dict[str, Any]]
    mm: mmap.mmap | None = None
    keys: np.ndarray | None = None
    stat: np.ndarray | None = None
    ids: list[str] | None = None
    digest: str | None = field(default=None, repr=False)

    def release(self) -> None:
        """Drop this shard's pages from memory (they are read again from disk if needed)."""
        if self.mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            self.mm.madvise(mmap.MADV_DONTNEED)

    @property
    def stop(self) -> int:
        return self.start + int(self.counts.shape[0])

    def content_digest(self) -> str:
        """sha256 of what the shard holds (see :func:`shard_digest`)."""
        if self.digest is None:
            self.digest = shard_digest(
                self.counts, self.patterns, self.global_, self.keys, self.ids, self.failed
            )
        return self.digest


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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BankError(f"{path} is not a geal bank manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BankError(
            f"bank {root} has format version {manifest.get('format_version')}, "
            f"this geal reads version {FORMAT_VERSION}; re-extract it "
            "(`geal extract` with --overwrite, or another --out)"
        )
    return manifest


def mismatches(
    manifest: dict[str, Any], options: dict[str, Any], pool: dict[str, Any]
) -> list[str]:
    """Human-readable differences between a bank's manifest and a request."""
    out = option_mismatches(manifest, options)
    if manifest.get("pool", {}).get("fingerprint") != pool.get("fingerprint"):
        out.append("pool: the images changed since the bank was made")
    return out


def option_mismatches(manifest: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """The options (of :data:`MATCH_KEYS`) that differ between a bank and a request."""
    have = manifest.get("options", {})
    return [
        f"{key}: bank has {have.get(key)!r}, asked {options.get(key)!r}"
        for key in MATCH_KEYS
        if have.get(key) != options.get(key)
    ]


def same_pool(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two pool descriptions name the same pool (root, format, split)."""
    return all(a.get(k) == b.get(k) for k in POOL_IDENTITY)


# --- content hashes ----------------------------------------------------------------------
def shard_digest(
    counts: np.ndarray,
    patterns: np.ndarray,
    global_: np.ndarray | None,
    keys: np.ndarray | None,
    ids: Sequence[str] | None,
    failed: list[dict[str, Any]],
) -> str:
    """sha256 of one shard's content: its arrays (dtype, shape, bytes), ids and failures.

    File times (the ``stat`` rows) are left out: they say when, not what.
    """
    h = hashlib.sha256()
    for name, arr in (("counts", counts), ("patterns", patterns), ("global", global_),
                      ("keys", keys)):  # fmt: skip
        if arr is None:
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{name} {a.dtype.str} {list(a.shape)}\n".encode())
        h.update(a.data)
    h.update(_canonical({"ids": list(ids) if ids is not None else None, "failed": failed}))
    return h.hexdigest()


def combine_digests(digests: Sequence[str]) -> str:
    """One sha256 over shard digests, in shard order."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- shards ------------------------------------------------------------------------------
def _write_safetensors(f: IO[bytes], tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    """The safetensors layout, written in a fixed order so equal inputs give equal bytes.

    Header keys are sorted; data is laid out by element size (largest first), then name,
    so every tensor is aligned to its element size, as safetensors' own writer does.
    """
    order = sorted(tensors, key=lambda name: (-tensors[name].dtype.itemsize, name))
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name in order:
        a = tensors[name]
        header[name] = {
            "dtype": _ST_NAMES[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for name in order:
        f.write(np.ascontiguousarray(tensors[name]).data)


def write_shard(
    path: Path,
    start: int,
    counts: np.ndarray,
    patterns: np.ndarray,
    global_: np.ndarray | None,
    failed: list[dict[str, Any]],
    *,
    keys: np.ndarray | None = None,
    stat: np.ndarray | None = None,
    ids: Sequence[str] | None = None,
) -> str:
    """Write one shard atomically (temp file + rename); returns its content digest."""
    tensors: dict[str, np.ndarray] = {"counts": np.ascontiguousarray(counts, dtype=np.int32)}
    tensors["patterns"] = np.ascontiguousarray(patterns)
    if global_ is not None:
        tensors["global"] = np.ascontiguousarray(global_)
    if keys is not None:
        tensors["keys"] = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, KEY_BYTES)
    if stat is not None:
        tensors["stat"] = np.ascontiguousarray(stat, dtype=np.int64).reshape(-1, 2)
    digest = shard_digest(
        tensors["counts"], tensors["patterns"], tensors.get("global"), tensors.get("keys"),
        ids, failed,
    )  # fmt: skip
    meta = {"start": str(start), "failed": _canonical(failed).decode(), "content_sha256": digest}
    if ids is not None:
        meta["ids"] = _canonical(list(ids)).decode()
    with atomic_open(path, "wb") as f:
        _write_safetensors(f, tensors, meta)
    return digest


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
        ids = json.loads(meta["ids"]) if "ids" in meta else None
        counts = arrays["counts"]
        patterns = arrays["patterns"]
    except (OSError, ValueError, KeyError, struct.error, json.JSONDecodeError) as e:
        raise BankError(
            f"bank shard {path} is damaged ({e}); delete it and rerun `geal extract`"
        ) from None
    n = counts.shape[0]
    if (
        int(counts.sum()) != patterns.shape[0]
        or (ids is not None and len(ids) != n)
        or any(name in arrays and arrays[name].shape[0] != n for name in ("keys", "stat"))
    ):
        raise BankError(f"bank shard {path} is inconsistent; delete it and rerun `geal extract`")
    return Shard(
        start, counts, patterns, arrays.get("global"), failed, mm,
        keys=arrays.get("keys"), stat=arrays.get("stat"), ids=ids,
        digest=meta.get("content_sha256"),
    )  # fmt: skip


# --- rows to reuse -----------------------------------------------------------------------
@dataclass
class ReusedRow:
    """One image's result taken from an earlier bank: patterns, or why it failed."""

    patterns: np.ndarray
    global_: np.ndarray | None
    failed: dict[str, Any] | None


class ReusableRows:
    """The rows of earlier banks made with the same options, by content key.

    Also gathers, from banks of the same pool, the (size, mtime_ns, key) recorded for
    each image id, so files that did not change are not hashed again.
    """

    def __init__(self) -> None:
        self._rows: dict[bytes, tuple[Shard, int, int]] = {}
        self._failed: dict[int, dict[int, dict[str, Any]]] = {}
        self._bank_keys: dict[Path, list[bytes]] = {}
        self.known: dict[str, tuple[int, int, bytes]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def add_bank(self, root: Path, *, trust_stat: bool) -> int:
        """Index the readable shards of the bank at ``root``; returns the rows indexed."""
        try:
            manifest = read_manifest(root)
        except BankError:
            return 0
        added = 0
        for k in range(int(manifest.get("n_shards", 0))):
            path = root / shard_name(k)
            if not path.exists():
                continue
            try:
                shard = read_shard(path)
            except BankError as e:
                log.warning("not reusing %s: %s", path, e)
                continue
            added += self._add_shard(shard, trust_stat=trust_stat)
            if shard.keys is not None:
                self._bank_keys.setdefault(root, []).extend(bytes(k) for k in shard.keys)
        return added

    def clear(self) -> None:
        """Let go of the earlier banks' shards (and their memory maps)."""
        self._rows.clear()
        self._failed.clear()

    def matched(self, root: Path, keys: set[bytes]) -> int:
        """Rows of the bank at ``root`` (as added) whose content key is in ``keys``."""
        return sum(1 for k in self._bank_keys.get(root, ()) if k != NO_KEY and k in keys)

    def _add_shard(self, shard: Shard, *, trust_stat: bool) -> int:
        if shard.keys is None:
            return 0
        sid = id(shard)
        self._failed[sid] = {int(f["index"]) - shard.start: f for f in shard.failed}
        offsets = np.concatenate([[0], np.cumsum(shard.counts, dtype=np.int64)])
        added = 0
        for r in range(shard.counts.shape[0]):
            key = shard.keys[r].tobytes()
            if key == NO_KEY:
                continue
            if key not in self._rows:
                self._rows[key] = (shard, r, int(offsets[r]))
                added += 1
            if trust_stat and shard.ids is not None and shard.stat is not None:
                size, mtime = int(shard.stat[r, 0]), int(shard.stat[r, 1])
                if size >= 0:
                    self.known[shard.ids[r]] = (size, mtime, key)
        return added

    def get(self, key: bytes) -> ReusedRow | None:
        """The row recorded for content ``key``, if any."""
        hit = self._rows.get(key)
        if hit is None:
            return None
        shard, r, a = hit
        pats = shard.patterns[a : a + int(shard.counts[r])]
        glob = shard.global_[r] if shard.global_ is not None else None
        return ReusedRow(pats, glob, self._failed[id(shard)].get(r))


# --- writing -----------------------------------------------------------------------------
def _staging(root: Path) -> Path:
    return root.parent / f".{root.name}.staging"


def _retired(root: Path) -> Path:
    return root.parent / f".{root.name}.old"


def _recover(root: Path) -> None:
    """Finish a replacement interrupted between its two renames (see :meth:`BankWriter.finish`)."""
    staging, old = _staging(root), _retired(root)
    if not root.exists() and staging.is_dir():
        with contextlib.suppress(BankError):
            if read_manifest(staging).get("complete"):
                os.rename(staging, root)
                log.info("finished replacing bank %s", root)
    if root.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _is_empty(root: Path) -> bool:
    return not root.exists() or not any(root.iterdir())


class BankWriter:
    """Creates, resumes or replaces a bank directory shard by shard.

    Attributes:
        root: where shards are written now (the bank, or a staging directory beside it
            while a changed pool's bank is being built).
        target: where the finished bank lives.
        manifest: the manifest being written.
        sources: earlier bank directories made with the same options whose rows may be
            reused, each with whether its recorded file times apply to this pool.
        replaced: rows of the bank being replaced (0 when none).
        why: why it is being replaced.
        removed: rows of the replaced bank matching no image of the new pool (set by
            the extraction once it knows the new pool's keys).
    """

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        *,
        target: Path | None = None,
        sources: Sequence[tuple[Path, bool]] = (),
        replaced: int = 0,
        why: str = "",
    ):
        self.root = Path(root)
        self.target = Path(target) if target is not None else self.root
        self.manifest = manifest
        self.sources = list(sources)
        self.replaced = replaced
        self.why = why
        self.removed = 0

    @property
    def replacing(self) -> bool:
        return self.target != self.root

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
            old = _manifest_or_none(root, overwrite)
            diff = mismatches(old, options, pool) if old is not None else ["format"]
            same_layout = old is not None and (old.get("n"), old.get("shard_size")) == (
                n,
                shard_size,
            )
            if old is not None and not diff and same_layout:
                return cls(root, old, sources=[(root, True)])
            if not overwrite:
                raise BankError(
                    f"bank {root} was made with other settings ({'; '.join(diff) or 'shard size'}); "
                    "use another --out or pass --overwrite"
                )
            _clear(root)
        elif not _is_empty(root):
            raise BankError(
                f"{root} exists and is not a pattern bank; choose an empty or new --out"
            )
        return cls._fresh(root, options, pool, n, shard_size)

    @classmethod
    def prepare(
        cls,
        root: str | Path,
        options: dict[str, Any],
        pool: dict[str, Any],
        n: int,
        shard_size: int,
        *,
        overwrite: bool = False,
    ) -> BankWriter:
        """The writer an extraction into ``root`` needs; call it holding :func:`bank_lock`.

        - no bank there: a new one;
        - a bank with the same options from the same, unchanged pool: resumed (or, when
          complete, reused as it is);
        - the same options, but the pool's images (or the shard size) changed: a new bank
          built in a staging directory beside it, reusing the rows of every image whose
          content it already holds, and renamed into place by :meth:`finish`;
        - other options, an older format or another pool: a :class:`BankError` unless
          ``overwrite``; then a new bank is built beside it in the same way (from
          scratch for other options or formats, reusing rows by content for another
          pool), so the old bank stays whole until the new one replaces it.
        """
        root = Path(root)
        _recover(root)
        if not (root / MANIFEST).exists():
            if not _is_empty(root):
                raise BankError(
                    f"{root} exists and is not a pattern bank; choose an empty or new --out"
                )
            shutil.rmtree(_staging(root), ignore_errors=True)
            return cls._fresh(root, options, pool, n, shard_size)
        old = _manifest_or_none(root, overwrite)
        diff = option_mismatches(old, options) if old is not None else ["an older format"]
        if diff and not overwrite:
            raise BankError(
                f"bank {root} was made with other settings ({'; '.join(diff)}); "
                "use another --out or pass --overwrite"
            )
        was = old.get("pool", {}) if old is not None else {}
        if not diff and not same_pool(was, pool) and not overwrite:
            raise BankError(
                f"bank {root} was made from another pool ({was.get('format')} {was.get('root')}"
                f"{', split ' + str(was.get('split')) if was.get('split') else ''}); "
                "use another --out or pass --overwrite"
            )
        unchanged = (
            old is not None
            and not diff
            and same_pool(was, pool)
            and (was.get("fingerprint"), old.get("n"), old.get("shard_size"))
            == (pool.get("fingerprint"), n, shard_size)
        )
        if unchanged:
            shutil.rmtree(_staging(root), ignore_errors=True)
            return cls(root, old or {}, sources=[(root, True)])
        staging = _staging(root)
        manifest = None
        with contextlib.suppress(BankError):
            have = read_manifest(staging)
            if (
                not mismatches(have, options, pool)
                and same_pool(have.get("pool", {}), pool)
                and have.get("n") == n
                and have.get("shard_size") == shard_size
            ):
                manifest = have  # an interrupted replacement: go on with it
        if manifest is None:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            manifest = make_manifest(options, pool, n, None, shard_size)
            atomic_write_json(staging / MANIFEST, manifest)
        sources = [(staging, True)]
        if not diff:  # rows made with the same options: reusable by content
            sources.append((root, same_pool(was, pool)))
        if diff:
            why = "other settings, --overwrite"
        elif not same_pool(was, pool):
            why = "made from another pool, --overwrite"
        elif old is not None and (was.get("fingerprint"), old.get("n")) == (
            pool.get("fingerprint"),
            n,
        ):
            why = "another shard size"
        else:
            why = "the pool changed"
        replaced = int(old.get("n", 0)) if old is not None else 0
        return cls(staging, manifest, target=root, sources=sources, replaced=replaced, why=why)

    @classmethod
    def _fresh(
        cls, root: Path, options: dict[str, Any], pool: dict[str, Any], n: int, shard_size: int
    ) -> BankWriter:
        root.mkdir(parents=True, exist_ok=True)
        manifest = make_manifest(options, pool, n, None, shard_size)
        atomic_write_json(root / MANIFEST, manifest)
        return cls(root, manifest)

    @property
    def complete(self) -> bool:
        """The bank is finished and needs nothing more (a deleted shard is written again)."""
        return (
            bool(self.manifest.get("complete")) and not self.replacing and not self.missing_shards()
        )

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

    def reusable_rows(self) -> ReusableRows:
        """Rows of this writer's sources, by content key (see :class:`ReusableRows`)."""
        rows = ReusableRows()
        for root, trust_stat in self.sources:
            rows.add_bank(root, trust_stat=trust_stat)
        return rows

    def write(
        self,
        k: int,
        counts: np.ndarray,
        patterns: np.ndarray,
        global_: np.ndarray | None,
        failed: list[dict[str, Any]],
        *,
        keys: np.ndarray | None = None,
        stat: np.ndarray | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        start, stop = self.shard_range(k)
        if counts.shape[0] != stop - start:
            raise ValueError(f"shard {k} needs {stop - start} images, got {counts.shape[0]}")
        dim = int(patterns.shape[1])
        if self.manifest.get("dim") is None:
            self.manifest["dim"] = dim
            atomic_write_json(self.root / MANIFEST, self.manifest)
        write_shard(
            self.root / shard_name(k), start, counts, patterns, global_, failed,
            keys=keys, stat=stat, ids=ids,
        )  # fmt: skip

    def finish(self) -> PatternBank:
        """Mark the bank complete, write ``failed.json`` and return it opened.

        A bank built beside the one it replaces is renamed into place: the old bank is
        renamed aside, the new one takes its name, the old one is deleted. Readers see
        the old bank or the new one, never a mix; a crash between the two renames is
        finished by the next :meth:`prepare`.
        """
        missing = self.missing_shards()
        if missing:
            raise BankError(f"bank {self.root} still lacks shards {missing[:5]}")
        bank = PatternBank.open(self.root, require_complete=False)
        atomic_write_json(self.root / FAILED, bank.failed)
        self.manifest["complete"] = True
        self.manifest["dim"] = bank.dim
        self.manifest["n_patterns"] = bank.n_patterns
        self.manifest["n_failed"] = len(bank.failed)
        self.manifest["content_sha256"] = combine_digests([s.content_digest() for s in bank.shards])
        atomic_write_json(self.root / MANIFEST, self.manifest)
        bank.manifest = self.manifest
        if self.replacing:
            old = _retired(self.target)
            shutil.rmtree(old, ignore_errors=True)
            if self.target.exists():
                os.rename(self.target, old)
            os.rename(self.root, self.target)
            shutil.rmtree(old, ignore_errors=True)
            self.root = bank.root = self.target
        return bank


def _manifest_or_none(root: Path, overwrite: bool) -> dict[str, Any] | None:
    """The manifest at ``root``; None for an unreadable or older one when ``overwrite``."""
    try:
        return read_manifest(root)
    except BankError:
        if overwrite:
            return None
        raise


def _clear(root: Path) -> None:
    """Delete a bank's files (not the directory, nor anything else in it)."""
    for p in root.glob("shard-*.safetensors"):
        p.unlink()
    (root / FAILED).unlink(missing_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)


def lock_path(root: str | Path) -> Path:
    """The lock file of the bank at ``root``: beside it, so it survives the bank's
    replacement (see :meth:`BankWriter.finish`)."""
    root = Path(root)
    return root.parent / f".{root.name}.lock"


@contextlib.contextmanager
def bank_lock(root: str | Path) -> Iterator[None]:
    """Hold the bank at ``root`` for writing; a second writer waits, then finds it done."""
    with file_lock(lock_path(root), f"bank {root}"):
        yield
