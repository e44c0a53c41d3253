"""The pool types every reader produces and every later stage consumes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geal.errors import PoolError
from geal.internal.images import load_image


@dataclass(frozen=True)
class PoolItem:
    """One image of a pool.

    Attributes:
        index: position in the pool, 0..N-1; samplers and banks speak in indices.
        id: stable identifier, unique in the pool (VOC: ``2007/000005``; folder: relative
            path; COCO: image id as text; CIFAR/IDX: ``<split>/<n>``).
        path: file the image is read from, or ``None`` for images stored inside a
            container file (CIFAR batches, IDX files).
        subset: where the item comes from inside the pool (VOC year, COCO split, CIFAR
            batch, IDX file stem), ``None`` for plain folders.
        label: class index when the pool carries one label per image, else ``None``.
    """

    index: int
    id: str
    path: str | None = None
    subset: str | None = None
    label: int | None = None


@dataclass
class Pool(Sequence[PoolItem]):
    """A sequence of :class:`PoolItem` that can load each image.

    Readers subclass this and implement :meth:`load`. ``root`` is the path the user
    gave; ``format`` is the registry name of the reader; ``classes`` names the labels
    when the pool has them; ``meta`` holds what exporters need to write split files
    that the original trainers read (COCO annotation file, VOC devkit root, ...).
    """

    root: Path
    format: str
    items: list[PoolItem]
    classes: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.items:
            raise PoolError(f"pool {self.root} holds no images")
        seen: dict[str, int] = {}
        for i, item in enumerate(self.items):
            if item.index != i:
                raise ValueError(f"item {item.id!r} has index {item.index}, expected {i}")
            if item.id in seen:
                raise PoolError(
                    f"pool {self.root} has duplicate image id {item.id!r} "
                    f"(items {seen[item.id]} and {i}); ids must be unique"
                )
            seen[item.id] = i
        self._by_id = seen

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> PoolItem:  # type: ignore[override]
        return self.items[index]

    def __iter__(self) -> Iterator[PoolItem]:
        return iter(self.items)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def index_of(self, image_id: str) -> int:
        """Pool index of ``image_id``; :class:`PoolError` if the pool has no such id."""
        try:
            return self._by_id[image_id]
        except KeyError:
            raise PoolError(f"pool {self.root} has no image with id {image_id!r}") from None

    def load(self, index: int, draft: int | None = None) -> Image.Image:
        """Decode image ``index`` as an 8-bit RGB :class:`PIL.Image.Image`.

        Pixels wider than 8 bits (16-bit grey, 32-bit integer or float) are scaled by
        their real range, not clipped (see :func:`geal.internal.images.to_rgb`). Raises
        any decoding error unchanged; the extractor catches, counts and lists it.

        Args:
            index: pool index.
            draft: the side the picture is for: a JPEG is decoded at the smallest DCT
                scale that still covers ``draft`` x ``draft`` (``Image.draft``), which is
                several times faster for large photos and deterministic. None decodes
                every pixel. Pictures that are not JPEGs ignore it.
        """
        item = self.items[index]
        if item.path is None:
            raise NotImplementedError(f"{type(self).__name__} must implement load()")
        with Image.open(item.path) as im:
            return load_image(im, draft)

    def content_key(self, index: int) -> bytes:
        """sha256 digest of image ``index``'s content, which keys its per-image work.

        The bytes of its file; for images stored inside a container (no ``path``), the
        decoded picture (mode, size and pixels). Raises reading errors unchanged.
        """
        item = self.items[index]
        h = hashlib.sha256()
        if item.path is not None:
            with open(item.path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
        else:
            image = self.load(index)
            h.update(f"{image.mode} {image.size[0]}x{image.size[1]}\n".encode())
            h.update(image.tobytes())
        return h.digest()

    def file_stat(self, index: int) -> tuple[int, int] | None:
        """(size, mtime_ns) of image ``index``'s own file; None when it has none or it
        cannot be looked at."""
        path = self.items[index].path
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return int(st.st_size), int(st.st_mtime_ns)

    def fingerprint(self) -> str:
        """A hash of ids, file sizes and modification times, for cache validity.

        Container formats (CIFAR, IDX, COCO json) contribute the container files instead
        of per-item files, listed in ``meta["files"]``.
        """
        h = hashlib.sha256()
        h.update(f"{self.format}\n{len(self.items)}\n".encode())
        for item in self.items:
            h.update(item.id.encode())
            h.update(b"\0")
            if item.path is not None:
                h.update(_stat_key(item.path))
            h.update(b"\n")
        for f in sorted(self.meta.get("files", [])):
            h.update(str(f).encode())
            h.update(_stat_key(str(f)))
        return h.hexdigest()

    def head(self, n: int) -> Pool:
        """The first ``n`` images as a pool of the same kind (itself when ``n`` covers all).

        Pools that hold their pixels in memory (IDX) keep only the rows they need. The
        prefix is recorded in ``meta["limit"]`` (and in :meth:`describe`), so a bank made
        from it reopens its pool as the same prefix.
        """
        if n >= len(self.items):
            return self
        changes: dict[str, Any] = {"items": self.items[:n], "meta": {**self.meta, "limit": n}}
        pixels = getattr(self, "pixels", None)
        if "pixels" in {f.name for f in fields(self)} and pixels is not None:
            changes["pixels"] = np.ascontiguousarray(pixels[:n])
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary recorded in manifests and ``selection.json``.

        ``root`` is the resolved absolute path, so a bank or selection made here reopens
        its pool from any working directory.
        """
        out = {
            "root": str(Path(self.root).expanduser().resolve()),
            "format": self.format,
            "split": self.meta.get("split"),
            "n": len(self.items),
            "classes": self.classes,
        }
        if self.meta.get("limit"):
            out["limit"] = int(self.meta["limit"])  # the first n images of the source
        return out


def _stat_key(path: str) -> bytes:
    try:
        st = os.stat(path)
    except OSError:
        return b"missing"
    return f"{st.st_size}:{st.st_mtime_ns}".encode()
