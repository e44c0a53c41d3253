"""A bank's shard files: a fixed safetensors layout, byte-reproducible, memory-mapped."""

from __future__ import annotations

import json
import logging
import mmap
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from geal.bank.manifest import ST_DTYPES, ST_NAMES, canonical_json, shard_digest
from geal.errors import BankError
from geal.internal.content import KEY_BYTES
from geal.internal.io import atomic_open

log = logging.getLogger(__name__)


NO_KEPT = -1  # ``kept`` of a row reused from a bank that did not record it


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


@dataclass
class Shard:
    """One shard's arrays (memory-mapped when read from disk).

    ``keys`` (uint8 ``[n, 32]``), ``stat`` (int64 ``[n, 2]``) and ``ids`` describe each
    row's image; they are ``None`` in banks built from arrays. ``kept`` (int32 ``[n]``)
    is how many tokens each image's patterns were fitted on (0 for unreadable images,
    :data:`NO_KEPT` where unknown); ``None`` in shards written before it was recorded.
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
    kept: np.ndarray | None = None

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
                self.counts,
                self.patterns,
                self.global_,
                self.keys,
                self.ids,
                self.failed,
                self.kept,
            )
        return self.digest


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
            "dtype": ST_NAMES[a.dtype],
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
    kept: np.ndarray | None = None,
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
    if kept is not None:
        tensors["kept"] = np.ascontiguousarray(kept, dtype=np.int32).reshape(-1)
    digest = shard_digest(
        tensors["counts"], tensors["patterns"], tensors.get("global"), tensors.get("keys"),
        ids, failed, tensors.get("kept"),
    )  # fmt: skip
    meta = {
        "start": str(start),
        "failed": canonical_json(failed).decode(),
        "content_sha256": digest,
    }
    if ids is not None:
        meta["ids"] = canonical_json(list(ids)).decode()
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
            dtype = ST_DTYPES[info["dtype"]]
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
        or any(name in arrays and arrays[name].shape[0] != n for name in ("keys", "stat", "kept"))
    ):
        raise BankError(f"bank shard {path} is inconsistent; delete it and rerun `geal extract`")
    return Shard(
        start, counts, patterns, arrays.get("global"), failed, mm,
        keys=arrays.get("keys"), stat=arrays.get("stat"), ids=ids,
        digest=meta.get("content_sha256"), kept=arrays.get("kept"),
    )  # fmt: skip
