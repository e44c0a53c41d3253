"""PatternBank: ragged per-image knowledge clusters on disk.

A bank is a directory::

    bank.json                 manifest: options, pool, N, D, dtype, shards, content hash
    shard-00000.safetensors   images [0, S): counts, patterns, global, keys, stat, ids, kept
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

from geal.bank.manifest import (
    FAILED,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MATCH_KEYS,
    make_manifest,
    manifest_hash,
    mismatches,
    read_manifest,
)
from geal.bank.reader import PatternBank
from geal.bank.shards import NO_KEPT, Shard, read_shard, shard_name, write_shard
from geal.bank.writer import BankWriter, ReusableRows, ReusedRow, bank_lock, lock_path

__all__ = [
    "FAILED",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "MATCH_KEYS",
    "NO_KEPT",
    "BankWriter",
    "PatternBank",
    "ReusableRows",
    "ReusedRow",
    "Shard",
    "bank_lock",
    "lock_path",
    "make_manifest",
    "manifest_hash",
    "mismatches",
    "read_manifest",
    "read_shard",
    "shard_name",
    "write_shard",
]
