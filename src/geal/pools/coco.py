"""COCO: the images of an ``instances_<split>.json`` annotation file.

Accepts the json itself or a folder holding ``annotations/instances_*.json`` (``split``
picks one when there are several: ``train2017``, ``val2017``, ...). Images are read from
the folder named after the split beside ``annotations/`` (``coco/val2017/``), inside the
json's own folder, or under ``images/<split>/``; failing those, from the folder beside
``annotations/`` that holds the first listed image (for renamed subsets). Items are sorted by image id; the id is
the COCO image id as text. Images hold many objects, so items carry no label; the
category names, in category-id order, are the pool's ``classes``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from geal.errors import PoolError
from geal.pools.base import Pool, PoolItem
from geal.pools.registry import register_format

logger = logging.getLogger(__name__)

_ANNOTATION = re.compile(r"^instances_(.+)\.json$")
REQUIRED_KEYS = ("images", "annotations", "categories")


def split_of(annotation_file: Path) -> str:
    """``val2017`` for ``instances_val2017.json``; the file stem for other names."""
    match = _ANNOTATION.match(annotation_file.name)
    return match.group(1) if match else annotation_file.stem


def annotation_files(folder: Path) -> list[Path]:
    """``instances_*.json`` files in ``folder/annotations`` and ``folder``, sorted."""
    found: list[Path] = []
    for where in (folder / "annotations", folder):
        if where.is_dir():
            found += sorted(f for f in where.iterdir() if _ANNOTATION.match(f.name) and f.is_file())
    return found


def _detect(path: Path) -> bool:
    if path.is_file():
        return bool(_ANNOTATION.match(path.name))
    return path.is_dir() and bool(annotation_files(path))


def load_coco_json(path: str | Path) -> dict[str, Any]:
    """Read a COCO annotation file and check it has the ``images``, ``annotations`` and
    ``categories`` lists.

    Raises:
        PoolError: naming the file, when it cannot be read, is not JSON or lacks a key.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise PoolError(f"COCO annotation file {path} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise PoolError(f"COCO annotation file {path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise PoolError(f"cannot read COCO annotation file {path}: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise PoolError(f"COCO annotation file {path} holds a {type(data).__name__}, not an object")
    missing = [key for key in REQUIRED_KEYS if not isinstance(data.get(key), list)]
    if missing:
        raise PoolError(
            f"COCO annotation file {path} lacks the {', '.join(repr(k) for k in missing)} "
            f"list{'s' if len(missing) > 1 else ''}"
        )
    return data


def _choose_annotation_file(path: Path, split: str | None) -> Path:
    if path.is_file():
        if split and split not in (split_of(path), path.name, path.stem):
            raise PoolError(f"COCO annotation file {path} is not split {split!r}")
        return path
    files = annotation_files(path)
    if not files:
        raise PoolError(f"{path} holds no annotations/instances_*.json")
    if split:
        chosen = [f for f in files if split in (split_of(f), f.name, f.stem)]
        if not chosen:
            raise PoolError(
                f"COCO folder {path} has no annotation file for split {split!r}; found "
                + ", ".join(split_of(f) for f in files)
            )
        return chosen[0]
    if len(files) > 1:
        raise PoolError(
            f"COCO folder {path} holds several annotation files; choose one with --split: "
            + ", ".join(split_of(f) for f in files)
        )
    return files[0]


def _image_dir(annotation_file: Path, first_file: str) -> Path:
    """The folder the json's ``file_name``s are relative to.

    First the folder named after the split (``val2017`` for ``instances_val2017.json``)
    in the usual places; failing that, a folder beside ``annotations/`` holding the first
    listed image, so renamed files such as ``instances_geal_1000.json`` still open.
    """
    name = split_of(annotation_file)
    here = annotation_file.parent
    candidates = [
        here.parent / name,
        here / name,
        here.parent / "images" / name,
        here / "images",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    for base in (here.parent, here):
        for child in sorted(base.iterdir()):
            if child.is_dir() and (child / first_file).is_file():
                logger.info("images of %s found in %s", annotation_file, child)
                return child
    raise PoolError(
        f"cannot find the image folder of {annotation_file}; looked for "
        + ", ".join(str(c) for c in candidates)
        + f" and for a folder beside them holding {first_file}"
    )


def _sort_key(image_id: int | str) -> tuple[int, int | str]:
    return (0, image_id) if isinstance(image_id, int) else (1, image_id)


@register_format(
    "coco", _detect, "COCO instances_*.json (or its folder; --split train2017)", priority=40
)
def read_coco(path: Path, *, split: str | None = None) -> Pool:
    """Open the images listed in a COCO annotation file, sorted by image id."""
    annotation_file = _choose_annotation_file(Path(path), split)
    data = load_coco_json(annotation_file)

    images: list[tuple[int | str, str]] = []
    for n, image in enumerate(data["images"]):
        image_id = image.get("id") if isinstance(image, dict) else None
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise PoolError(f"COCO annotation file {annotation_file}: image {n} has no valid 'id'")
        if not isinstance(file_name, str) or not file_name:
            raise PoolError(
                f"COCO annotation file {annotation_file}: image {image_id} has no 'file_name'"
            )
        images.append((image_id, file_name))
    if not images:
        raise PoolError(f"COCO annotation file {annotation_file} lists no images")
    image_dir = _image_dir(annotation_file, images[0][1]).absolute()
    images.sort(key=lambda pair: _sort_key(pair[0]))

    categories = []
    for category in data["categories"]:
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise PoolError(
                f"COCO annotation file {annotation_file}: every category needs an 'id' and a 'name'"
            )
        categories.append((category["id"], str(category["name"])))
    categories.sort(key=lambda pair: _sort_key(pair[0]))

    name = split_of(annotation_file)
    items = [
        PoolItem(index=i, id=str(image_id), path=str(image_dir / file_name), subset=name)
        for i, (image_id, file_name) in enumerate(images)
    ]
    logger.info(
        "COCO %s: %d images, %d annotations, %d categories",
        annotation_file,
        len(items),
        len(data["annotations"]),
        len(categories),
    )
    return Pool(
        root=Path(path),
        format="coco",
        items=items,
        classes=[category_name for _, category_name in categories],
        meta={
            "annotation_file": str(annotation_file.absolute()),
            "image_dir": str(image_dir),
            "split": name,
            "files": [str(annotation_file.absolute())],
        },
    )
