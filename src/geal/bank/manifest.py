"""A bank's manifest (``bank.json``): what made it, how it is matched, its content hash."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from geal._version import __version__
from geal.errors import BankError

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

ST_DTYPES = {
    "F16": np.float16,
    "F32": np.float32,
    "I32": np.int32,
    "I64": np.int64,
    "U8": np.uint8,
}
ST_NAMES = {np.dtype(v): k for k, v in ST_DTYPES.items()}


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
    kept: np.ndarray | None = None,
) -> str:
    """sha256 of one shard's content: its arrays (dtype, shape, bytes), ids and failures.

    File times (the ``stat`` rows) are left out: they say when, not what.
    """
    h = hashlib.sha256()
    for name, arr in (("counts", counts), ("patterns", patterns), ("global", global_),
                      ("keys", keys), ("kept", kept)):  # fmt: skip
        if arr is None:
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{name} {a.dtype.str} {list(a.shape)}\n".encode())
        h.update(a.data)
    h.update(canonical_json({"ids": list(ids) if ids is not None else None, "failed": failed}))
    return h.hexdigest()


def combine_digests(digests: Sequence[str]) -> str:
    """One sha256 over shard digests, in shard order."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
