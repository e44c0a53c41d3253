"""WebDataset shards: a folder of ``*.tar`` files, or one ``.tar`` file.

Samples are grouped exactly as ``webdataset`` groups them: a tar member ``dir/abc.x.jpg``
has the key ``dir/abc`` (everything before the first dot of its base name) and the
extension ``x.jpg`` (lower-cased); consecutive members with one key form one sample;
members that are not regular files or match ``__*__`` (metadata) are skipped. The test
suite checks this grouping against ``webdataset.WebDataset`` on generated shards.

The shards are indexed with the standard :mod:`tarfile` module rather than read through
``webdataset``: ``webdataset`` streams samples in order, while a pool must load any
image by index (data-loader workers each take their own indices), so the reader records
each image's byte offset in its shard once and reads those bytes on demand. The
``webdataset`` package is therefore not needed to read a pool. Shards must be plain
(uncompressed) tar files, the usual case, since compressed ones cannot be seeked.

Each sample gives one item: the image is the first of the ``jpg``, ``jpeg``, ``png``,
``webp`` entries (samples without one are skipped, and counted in the log); its id is
``__key__`` (``<shard>/<key>`` for every item when keys repeat across shards); its label
is the integer in ``cls`` when present. Shards are read in sorted name order and
samples in tar order, so every open lists the same items. The content key is the sha256
of the image's stored bytes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from geal.errors import PoolError
from geal.internal.images import decode_bytes
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
LABEL_KEY = "cls"
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext
_META = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta
_MAX_LABEL_BYTES = 64


def split_key(name: str) -> tuple[str, str] | None:
    """(key, extension) of a tar member name, as webdataset splits it; None if it has no dot."""
    match = _KEY.match(name)
    if not match:
        return None
    return match.group(1), match.group(2).lower()


def shard_files(path: Path) -> list[Path]:
    """The ``.tar`` shards: ``path`` itself, or the ``*.tar`` files in it, sorted by name."""
    if path.is_file():
        return [path] if path.suffix == ".tar" else []
    if not path.is_dir():
        return []
    return sorted(p for p in path.glob("*.tar") if p.is_file() and not p.name.startswith("."))


def _detect(path: Path) -> bool:
    return bool(shard_files(path))


@dataclass(frozen=True)
class _Entry:
    """Where one sample's image lies: shard number, byte offset and size."""

    shard: int
    offset: int
    size: int


def index_shard(shard: Path) -> list[tuple[str, dict[str, tarfile.TarInfo]]]:
    """The samples of one shard in tar order: (key, {extension: member})."""
    samples: list[tuple[str, dict[str, tarfile.TarInfo]]] = []
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                name = member.name
                if "/" not in name and name.startswith("__") and name.endswith("__"):
                    continue
                if _META.match(name):
                    continue
                split = split_key(name)
                if split is None:
                    continue
                key, ext = split
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                entries = samples[-1][1]
                if ext in entries:
                    raise PoolError(f"WebDataset shard {shard}: {name} repeats the entry {ext!r}")
                entries[ext] = member
    except tarfile.ReadError as exc:
        raise PoolError(f"{shard} is not a plain tar file: {exc}") from exc
    return samples


def _read_label(tar_path: Path, member: tarfile.TarInfo) -> int:
    if member.size > _MAX_LABEL_BYTES:
        raise PoolError(f"WebDataset shard {tar_path}: {member.name} is too long for a label")
    with open(tar_path, "rb") as f:
        f.seek(member.offset_data)
        text = f.read(member.size).decode("utf-8", errors="replace").strip()
    try:
        return int(text)
    except ValueError:
        raise PoolError(
            f"WebDataset shard {tar_path}: {member.name} holds {text!r}, not an integer class"
        ) from None


@dataclass
class WdsPool(Pool):
    """Images inside tar shards; :meth:`load` reads one image's bytes at its offset."""

    shards: list[str] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list, repr=False, compare=False)

    def _bytes(self, index: int) -> bytes:
        entry = self.entries[index]
        with open(self.shards[entry.shard], "rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.size)
        if len(data) != entry.size:
            raise OSError(f"{self.shards[entry.shard]} ends inside item {self.items[index].id!r}")
        return data

    def load(self, index: int, draft: int | None = None) -> Image.Image:
        """Image ``index`` decoded by Pillow as 8-bit RGB; decoding errors are raised."""
        return decode_bytes(self._bytes(index), draft)

    def content_key(self, index: int) -> bytes:
        """sha256 of the image's bytes as stored in the shard."""
        return hashlib.sha256(self._bytes(index)).digest()


@register_format(
    "wds", _detect, "WebDataset tar shards (folder of *.tar, or one .tar)", priority=30
)
def read_wds(path: Path, *, split: str | None = None) -> WdsPool:
    """Open every sample with an image in the shards at ``path`` (see the module docstring)."""
    path = Path(path)
    if split:
        raise PoolError(f"WebDataset pools have no splits; drop --split {split!r}")
    shards = shard_files(path)
    if not shards:
        raise PoolError(f"{path} holds no .tar shards")
    found: list[tuple[int, str, tarfile.TarInfo, tarfile.TarInfo | None]] = []
    skipped = 0
    for number, shard in enumerate(shards):
        for key, members in index_shard(shard):
            image = next((members[k] for k in IMAGE_KEYS if k in members), None)
            if image is None:
                skipped += 1
                continue
            found.append((number, key, image, members.get(LABEL_KEY)))
    if skipped:
        logger.warning(
            "WebDataset %s: %d samples without a jpg/png/jpeg/webp left out", path, skipped
        )
    keys = [key for _, key, _, _ in found]
    qualify = len(set(keys)) != len(keys)
    if qualify:
        logger.warning("WebDataset %s: keys repeat across shards; ids are <shard>/<key>", path)
    labels = [
        _read_label(shards[number], label) if label is not None else None
        for number, _, _, label in found
    ]
    items = [
        PoolItem(
            index=i,
            id=f"{shards[number].name}/{key}" if qualify else key,
            subset=shards[number].name,
            label=labels[i],
        )
        for i, (number, key, _, _) in enumerate(found)
    ]
    top = max((label for label in labels if label is not None), default=-1)
    classes = [str(c) for c in range(top + 1)] if top >= 0 else None
    logger.info("WebDataset %s: %d shards, %d images", path, len(shards), len(items))
    return WdsPool(
        root=path,
        format="wds",
        items=items,
        classes=classes,
        meta={"split": None, "files": [str(s.absolute()) for s in shards]},
        shards=[str(s.absolute()) for s in shards],
        entries=[_Entry(number, image.offset_data, image.size) for number, _, image, _ in found],
    )
