"""Image folder: every image file under a directory, found recursively by extension.

The catch-all reader, asked last by ``auto``. Ids are paths relative to the folder, so
they survive moving the folder. When the folder has the torchvision ``ImageFolder``
layout (at least two subfolders and every image exactly one level down) the subfolder
names become the classes and each item gets its label.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def is_image_name(name: str) -> bool:
    """True when ``name`` ends with a known image extension (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk_images(root: Path) -> Iterator[str]:
    """Yield paths of image files under ``root`` relative to it, in no particular order.

    Hidden files and folders (name starting with ``.``) are skipped: they hold editor,
    OS and notebook leftovers, not pool images. Symlinked folders are followed once.
    """
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link cycle or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if not name.startswith(".") and is_image_name(name):
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                yield Path(rel).as_posix()


def _detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    return next(_walk_images(path), None) is not None


@register_format("folder", _detect, "a directory of image files, searched recursively", priority=90)
def read_folder(path: Path, *, split: str | None = None) -> Pool:
    """Open every image under ``path`` (or under ``path/split`` when a split is named).

    Args:
        path: the folder.
        split: optional subfolder to read instead, e.g. ``train`` of an ImageNet-style
            tree; ids are then relative to that subfolder.
    """
    root = Path(path)
    if split:
        root = root / split
        if not root.is_dir():
            raise PoolError(f"image folder {path} has no subfolder {split!r}")
    if not root.is_dir():
        raise PoolError(f"image folder {root} is not a directory")
    rels = sorted(_walk_images(root))
    if not rels:
        raise PoolError(
            f"image folder {root} holds no images "
            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )

    classes: list[str] | None = None
    class_of: dict[str, int] = {}
    tops = [rel.split("/") for rel in rels]
    if all(len(parts) == 2 for parts in tops):
        names = sorted({parts[0] for parts in tops})
        if len(names) >= 2:
            classes = names
            class_of = {name: i for i, name in enumerate(names)}

    base = root.absolute()
    items = [
        PoolItem(
            index=i,
            id=rel,
            path=str(base / rel),
            subset=None,
            label=class_of[rel.split("/", 1)[0]] if classes is not None else None,
        )
        for i, rel in enumerate(rels)
    ]
    logger.info(
        "image folder %s: %d images%s",
        root,
        len(items),
        f" in {len(classes)} classes" if classes else "",
    )
    return Pool(root=root, format="folder", items=items, classes=classes)
