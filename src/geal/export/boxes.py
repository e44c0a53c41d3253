"""The boxes of a detection pool (COCO or VOC), in one form for the labeling-tool exporters.

:func:`pool_boxes` gives, per selected image, its size and its boxes as
``(class name, (x, y, w, h))`` in pixels, top-left corner and size. COCO boxes are that
already; VOC boxes are 1-based inclusive pixel indices, so a box spans ``xmin - 1 ..
xmax``. An image whose VOC annotation cannot be read gets no entry (with a warning).
"""

from __future__ import annotations

import logging
from typing import Any

from PIL import Image

from geal.errors import PoolError
from geal.pools.base import Pool

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
ImageBoxes = tuple[int, int, list[tuple[str, Box]]]


def has_boxes(pool: Pool) -> bool:
    """Whether ``pool`` carries boxes :func:`pool_boxes` can read."""
    if pool.format == "coco":
        return bool(pool.meta.get("annotation_file"))
    return pool.format == "voc" and hasattr(pool, "annotation")


def _coco_boxes(pool: Pool) -> dict[str, ImageBoxes]:
    """image id -> (width, height, [(class, (x, y, w, h))]) from the pool's COCO file."""
    from geal.pools.coco import load_coco_json

    doc = load_coco_json(pool.meta["annotation_file"])
    names = {c["id"]: str(c["name"]) for c in doc["categories"]}
    out: dict[str, ImageBoxes] = {}
    for image in doc["images"]:
        out[str(image["id"])] = (int(image.get("width") or 0), int(image.get("height") or 0), [])
    for ann in doc["annotations"]:
        entry = out.get(str(ann.get("image_id")))
        bbox = ann.get("bbox")
        if entry is None or not isinstance(bbox, list) or len(bbox) != 4:
            continue
        name = names.get(ann.get("category_id"))
        if name is not None:
            x, y, w, h = (float(v) for v in bbox)
            entry[2].append((name, (x, y, w, h)))
    return out


def pool_boxes(pool: Pool, indices: list[int]) -> dict[int, ImageBoxes]:
    """Pool index -> (width, height, boxes) for the images ``indices`` of a COCO or VOC
    pool; empty for other pools."""
    out: dict[int, ImageBoxes] = {}
    if pool.format == "coco" and pool.meta.get("annotation_file"):
        boxes = _coco_boxes(pool)
        for index in indices:
            width, height, objects = boxes.get(pool[index].id, (0, 0, []))
            if objects and not (width and height):
                with Image.open(str(pool[index].path)) as im:
                    width, height = im.size
            out[index] = (width, height, objects)
    elif pool.format == "voc" and hasattr(pool, "annotation"):
        bad = pool.meta.get("bad_annotations") or {}
        for index in indices:
            if pool[index].id in bad:
                logger.warning("no boxes for %s: %s", pool[index].id, bad[pool[index].id])
                continue
            try:
                ann: dict[str, Any] = pool.annotation(index)
            except PoolError as exc:
                logger.warning("no boxes for %s: %s", pool[index].id, exc)
                continue
            objects = [
                (str(obj["name"]), (xmin - 1.0, ymin - 1.0, xmax - xmin + 1.0, ymax - ymin + 1.0))
                for obj in ann["objects"]
                for xmin, ymin, xmax, ymax in [obj["bbox"]]
            ]
            out[index] = (int(ann["size"]["width"]), int(ann["size"]["height"]), objects)
    return out
