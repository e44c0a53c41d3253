"""List file: a ``.txt`` or ``.csv`` naming the pool's images, one per line or row.

Paths are relative to the list file's folder unless absolute, and the id of an item is
the path exactly as written, so a selection can be matched back to the list. Items keep
the list's order. A listed file that is missing is not an error here (the extractor
records each unreadable image with its reason), but a list in which no file exists is
almost surely relative to the wrong folder and is refused.

Text lists: blank lines and lines starting with ``#`` are ignored. CSV lists: either a
header row with a ``path`` column (and optionally ``label``: integers, or class names
that become ``classes`` in sorted order), or a single column without header.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

LIST_SUFFIXES = frozenset({".txt", ".csv"})


def _detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig drops the byte order mark spreadsheet programs put in CSV files.
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PoolError(f"cannot read list file {path}: {exc}") from exc


def _parse_txt(text: str) -> list[tuple[str, str | None]]:
    entries: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            entries.append((entry, None))
    return entries


def _parse_csv(text: str, path: Path) -> list[tuple[str, str | None]]:
    try:
        rows = [
            (n, [cell.strip() for cell in row])
            for n, row in enumerate(csv.reader(io.StringIO(text)), start=1)
        ]
    except csv.Error as exc:
        raise PoolError(f"list file {path} is not valid CSV: {exc}") from exc
    rows = [(n, row) for n, row in rows if any(row) and not row[0].startswith("#")]
    if not rows:
        return []
    header = [cell.lower() for cell in rows[0][1]]
    if "path" in header:
        path_col = header.index("path")
        label_col = header.index("label") if "label" in header else None
        entries: list[tuple[str, str | None]] = []
        for n, row in rows[1:]:
            if path_col >= len(row) or not row[path_col]:
                raise PoolError(f"list file {path} line {n} has no path")
            label = row[label_col] if label_col is not None and label_col < len(row) else ""
            entries.append((row[path_col], label or None))
        return entries
    for n, row in rows:
        if sum(1 for cell in row if cell) > 1:
            raise PoolError(
                f"list file {path} line {n} has several columns but the file has no header "
                "row naming a 'path' column"
            )
    return [(next(cell for cell in row if cell), None) for _, row in rows]


def _labels(raw: list[str | None], path: Path) -> tuple[list[int | None], list[str] | None]:
    """Integer labels as given, or class names mapped to their sorted position."""
    given = [value for value in raw if value is not None]
    if not given:
        return [None] * len(raw), None
    try:
        return [None if value is None else int(value) for value in raw], None
    except ValueError:
        pass
    classes = sorted(set(given))
    position = {name: i for i, name in enumerate(classes)}
    logger.info("list file %s: %d classes named in the label column", path, len(classes))
    return [None if value is None else position[value] for value in raw], classes


@register_format("list", _detect, "a .txt or .csv file listing image paths", priority=80)
def read_list(path: Path, *, split: str | None = None) -> Pool:
    """Open the images named by the list file ``path``.

    Args:
        path: the ``.txt`` or ``.csv`` list.
        split: not used by list files; naming one is an error rather than ignored.
    """
    path = Path(path)
    if split:
        raise PoolError(f"list file {path} has no splits; got split {split!r}")
    if not path.is_file():
        raise PoolError(f"list file {path} is not a file")
    text = _read_text(path)
    entries = _parse_csv(text, path) if path.suffix.lower() == ".csv" else _parse_txt(text)
    if not entries:
        raise PoolError(f"list file {path} names no images")

    base = path.parent.absolute()
    paths = [str(base / os.path.expanduser(written)) for written, _ in entries]
    # Stops at the first file found, so a healthy list costs one stat.
    if not any(os.path.exists(p) for p in paths):
        raise PoolError(
            f"none of the {len(paths)} files listed in {path} exists "
            f"(relative paths are read from {base}); first one: {paths[0]}"
        )
    labels, classes = _labels([label for _, label in entries], path)
    items = [
        PoolItem(index=i, id=written, path=p, subset=None, label=label)
        for i, ((written, _), p, label) in enumerate(zip(entries, paths, labels, strict=True))
    ]
    logger.info("list file %s: %d images", path, len(items))
    return Pool(root=path, format="list", items=items, classes=classes)
