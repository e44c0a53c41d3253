"""CVAT tasks: what CVAT's task creation takes, for the selection of ``budget`` images.

- ``cvat_<name>_<budget>.txt``: the images to upload, one absolute path a line, in rank
  order (the ``resources`` of a task; ``cvat-cli task create ... local $(cat FILE)``).
- ``cvat_<name>_<budget>.json``: the task request, in the fields of ``cvat-sdk``'s
  models, ``{"task": TaskWriteRequest, "data": DataRequest, "resource_type": "local",
  "resources": [...], "annotation_file": PATH | null, "annotation_format": "COCO 1.0" |
  null}``, ready for ``client.tasks.create_from_data(spec=TaskWriteRequest(**task),
  resources=resources, data_params=data, annotation_path=..., annotation_format=...)``.
  ``sorting_method`` is ``predefined``, so CVAT's frames follow the ranking. Labels are
  the pool's classes (``rectangle`` labels for COCO and VOC pools), else ``object``.
- ``cvat_<name>_<budget>_coco.json`` (COCO and VOC pools): the pool's boxes of the
  selected images as a COCO file CVAT imports as ``COCO 1.0`` annotations, so annotators
  correct boxes instead of drawing them. Its ``file_name`` is each image's frame name.

CVAT names a frame after its file's base name. When the selected images have no files
(CIFAR, IDX, Hugging Face Arrow/Parquet, WebDataset shards) or two of them share a base
name, the images are written to ``cvat_<name>_<budget>_images/`` as
``<rank>_<base name>`` (PNG for container images) and the list points there, at the
place the selection directory will be once in place (``final_dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from geal.export.base import (
    check_name,
    final_path,
    register_exporter,
    selected_indices,
    write_images,
)
from geal.export.boxes import has_boxes, pool_boxes
from geal.internal.io import atomic_write_json, atomic_write_text
from geal.pools.base import Pool
from geal.sampling.base import Ranking

logger = logging.getLogger(__name__)

COCO_FORMAT = "COCO 1.0"
IMAGE_QUALITY = 95  # CVAT's compressed frames; the originals are kept as uploaded


def _frames(
    pool: Pool, indices: list[int], out: Path, final_dir: str | Path | None, stem: str
) -> tuple[list[Path], list[str], list[Path]]:
    """(file per image as CVAT will read it, frame name per image, image files written)."""
    paths = [pool[i].path for i in indices]
    bases = [Path(p).name for p in paths if p is not None]
    if len(bases) == len(indices) and len(set(bases)) == len(bases):
        return [Path(str(p)).absolute() for p in paths], bases, []
    names = [
        f"{rank:06d}.png" if p is None else f"{rank:06d}_{Path(p).name}"
        for rank, p in enumerate(paths, start=1)
    ]
    written = write_images(pool, indices, out / f"{stem}_images", names, tool="CVAT")
    return [final_path(f, out, final_dir) for f in written], names, written


def _labels(pool: Pool, detection: bool) -> list[dict[str, Any]]:
    """The task's labels (``TaskWriteRequest.labels``)."""
    if detection:
        return [{"name": c, "type": "rectangle"} for c in pool.classes or ["object"]]
    return [{"name": c} for c in pool.classes or ["object"]]


def coco_annotations(
    pool: Pool, indices: list[int], frames: list[str], files: list[Path]
) -> dict[str, Any]:
    """The boxes of the selected images as a COCO document keyed by frame name."""
    boxes = pool_boxes(pool, indices)
    classes = list(pool.classes or [])
    for _, _, objects in boxes.values():
        classes += [name for name, _ in objects if name not in classes]
    category = {name: n for n, name in enumerate(classes, start=1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (index, frame) in enumerate(zip(indices, frames, strict=True), start=1):
        width, height, objects = boxes.get(index, (0, 0, []))
        if not (width and height):
            with Image.open(files[image_id - 1]) as im:
                width, height = im.size
        images.append({"id": image_id, "file_name": frame, "width": width, "height": height})
        for name, (x, y, w, h) in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category[name],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": n, "name": c, "supercategory": ""} for c, n in category.items()],
    }


@register_exporter("cvat")
def export_cvat(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """The image list, the task request and, with boxes, their COCO file (see the module)."""
    stem = f"cvat_{check_name(name)}_{budget}"
    out = Path(out_dir)
    indices = selected_indices(pool, ranking, budget).tolist()
    files, frames, written = _frames(pool, indices, out, final_dir, stem)
    detection = has_boxes(pool)
    image_list = atomic_write_text(out / f"{stem}.txt", "".join(f"{f}\n" for f in files))
    outputs = [image_list]
    annotation_file = None
    if detection:
        local = [written[i] if written else f for i, f in enumerate(files)]
        doc = coco_annotations(pool, indices, frames, local)
        coco = atomic_write_json(out / f"{stem}_coco.json", doc)
        outputs.append(coco)
        annotation_file = str(final_path(coco, out, final_dir))
    spec = {
        "task": {"name": f"{name}_{budget}", "labels": _labels(pool, detection)},
        "data": {"image_quality": IMAGE_QUALITY, "sorting_method": "predefined", "use_cache": True},
        "resource_type": "local",
        "resources": [str(f) for f in files],
        "annotation_file": annotation_file,
        "annotation_format": COCO_FORMAT if detection else None,
    }
    outputs.insert(1, atomic_write_json(out / f"{stem}.json", spec))
    logger.info("CVAT task %s: %d images", outputs[1], len(files))
    return [*outputs, *written]
