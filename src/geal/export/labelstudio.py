"""Label Studio tasks: ``labelstudio_<name>_<budget>.json`` and its labeling config.

The JSON file is a list of tasks in rank order, each
``{"data": {"image": REF}, "meta": {"geal_rank": r, "pool_index": i, "id": ID}}``,
ready for Label Studio's import. Beside it, ``labelstudio_<name>_<budget>.xml`` is a
labeling config whose ``<Image name="image" value="$image">`` matches the tasks:

- COCO and VOC pools: ``<RectangleLabels name="label" toName="image">`` listing the
  pool's classes, and each task carries the pool's boxes as ``predictions`` (type
  ``rectanglelabels``), so annotators correct boxes instead of drawing them. Label
  Studio places boxes in percent of the image: ``x``, ``y``, ``width``, ``height`` are
  ``100 * pixels / image size``, with ``original_width``/``original_height`` the size
  in pixels (the pixel boxes come from :func:`geal.export.boxes.pool_boxes`).
- other pools with class names: ``<Choices name="label" toName="image">`` of the
  classes; otherwise ``<RectangleLabels>`` with one label, ``object``.

Image references (``REF``):

- ``labelstudio``: Label Studio local-files URLs, ``/data/local-files/?d=<path>``, the
  path relative to a document root: the pool root (its folder when it is a file), or
  the deepest folder above both it and every selected image when some image lies
  outside it (COCO files beside an ``annotations/`` folder). Start Label Studio with
  ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to that folder, which the exporter logs
  and writes as a comment in the config, and add a local-files storage under it.
- ``labelstudio-files``: ``file://`` URIs of the images, for tools that read the files
  themselves.

Pools whose images live inside container files (CIFAR, IDX, Hugging Face datasets
stored as Arrow/Parquet, WebDataset shards) have no image files to point at: the
selected images are written as PNG files to ``labelstudio_<name>_<budget>_images/``
beside the JSON, and the references point there, relative to the selection directory
as it will be once in place (``final_dir``), which is then the document root.
``labelstudio`` and ``labelstudio-files`` write the same file names: ask for one.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from geal.errors import GealError
from geal.export.base import (
    check_name,
    final_path,
    register_exporter,
    selected_indices,
    write_images,
)
from geal.export.boxes import pool_boxes
from geal.internal.io import atomic_write_json, atomic_write_text
from geal.pools.base import Pool
from geal.sampling.base import Ranking

logger = logging.getLogger(__name__)

IMAGE_NAME = "image"
CONTROL_NAME = "label"
MODEL_VERSION = "geal-pool-annotations"
LOCAL_FILES_PREFIX = "/data/local-files/?d="


def local_files_url(path: str | Path, document_root: str | Path) -> str:
    """Label Studio's local-files URL of ``path``, relative to ``document_root``."""
    rel = Path(os.path.relpath(Path(path).absolute(), Path(document_root).absolute()))
    if rel.parts and rel.parts[0] == "..":
        raise GealError(f"{path} is not under the document root {document_root}")
    return LOCAL_FILES_PREFIX + urllib.parse.quote(rel.as_posix(), safe="/")


def percent_box(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> dict[str, float]:
    """A pixel box ``[x, y, w, h]`` (top-left corner and size) in Label Studio's percent
    coordinates of an image ``width`` x ``height``, clipped to the image."""
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return {
        "x": 100.0 * x0 / width,
        "y": 100.0 * y0 / height,
        "width": 100.0 * (x1 - x0) / width,
        "height": 100.0 * (y1 - y0) / height,
        "rotation": 0,
    }


def rectangle(
    label: str, box: tuple[float, float, float, float], width: int, height: int, n: int
) -> dict[str, Any]:
    """One ``rectanglelabels`` result of a prediction."""
    return {
        "id": f"geal{n}",
        "from_name": CONTROL_NAME,
        "to_name": IMAGE_NAME,
        "type": "rectanglelabels",
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {**percent_box(*box, width, height), "rectanglelabels": [label]},
    }


def predictions(pool: Pool, indices: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Pool index -> its boxes as ``rectanglelabels`` results (COCO and VOC pools)."""
    return {
        index: [rectangle(name, box, width, height, n) for n, (name, box) in enumerate(objects)]
        for index, (width, height, objects) in pool_boxes(pool, indices).items()
    }


def labeling_config(pool: Pool, *, detection: bool, document_root: str | None = None) -> str:
    """The labeling config matching the tasks (see the module docstring)."""
    lines = []
    if document_root is not None:
        comment = f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={document_root}".replace("--", "- -")
        lines.append(f"<!-- {comment} -->")
    lines += ["<View>", f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>']
    if detection or not pool.classes:
        classes = pool.classes if detection and pool.classes else ["object"]
        tag = "RectangleLabels"
    else:
        classes, tag = pool.classes, "Choices"
    lines.append(f'  <{tag} name="{CONTROL_NAME}" toName="{IMAGE_NAME}">')
    inner = "Label" if tag == "RectangleLabels" else "Choice"
    lines += [f"    <{inner} value={quoteattr(c)}/>" for c in classes]
    lines += [f"  </{tag}>", "</View>", ""]
    return "\n".join(lines)


def _image_refs(
    pool: Pool,
    indices: list[int],
    out_dir: Path,
    final_dir: str | Path | None,
    stem: str,
    *,
    uris: bool,
) -> tuple[list[str], str | None, list[Path]]:
    """(reference per selected image, the document root or None, image files written)."""
    paths = [pool[i].path for i in indices]
    written: list[Path] = []
    if all(p is not None for p in paths):
        files = [Path(str(p)).absolute() for p in paths]
        root = pool.root.absolute()
        root = root if root.is_dir() else root.parent
    else:  # images inside containers: write them beside the tasks
        names = [f"{rank:06d}.png" for rank in range(1, len(indices) + 1)]
        written = write_images(
            pool, indices, out_dir / f"{stem}_images", names, tool="Label Studio"
        )
        files = [final_path(target, out_dir, final_dir) for target in written]
        root = final_path(out_dir, out_dir, final_dir)
    if uris:
        return [f.as_uri() for f in files], None, written
    if any(os.path.relpath(f, root).startswith("..") for f in files):
        root = Path(os.path.commonpath([root, *files]))
        if root in files:
            root = root.parent
    return [local_files_url(f, root) for f in files], str(root), written


def export_labelstudio_tasks(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
    uris: bool = False,
) -> list[Path]:
    """Write the tasks, the labeling config and, for container pools, the images."""
    stem = f"labelstudio_{check_name(name)}_{budget}"
    out = Path(out_dir)
    indices = selected_indices(pool, ranking, budget).tolist()
    refs, document_root, written = _image_refs(pool, indices, out, final_dir, stem, uris=uris)
    detection = pool.format in ("coco", "voc")
    boxes = predictions(pool, indices) if detection else {}
    tasks = []
    for rank, (index, ref) in enumerate(zip(indices, refs, strict=True), start=1):
        task: dict[str, Any] = {
            "data": {IMAGE_NAME: ref},
            "meta": {"geal_rank": rank, "pool_index": int(index), "id": pool[index].id},
        }
        if boxes.get(index):
            task["predictions"] = [{"model_version": MODEL_VERSION, "result": boxes[index]}]
        tasks.append(task)
    target = atomic_write_json(out / f"{stem}.json", tasks)
    config = atomic_write_text(
        out / f"{stem}.xml",
        labeling_config(pool, detection=detection, document_root=document_root),
    )
    if document_root is not None:
        logger.info(
            "Label Studio tasks %s: set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=%s",
            target,
            document_root,
        )
    return [target, config, *written]


@register_exporter("labelstudio")
def export_labelstudio(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Label Studio tasks with local-files URLs, and their labeling config."""
    return export_labelstudio_tasks(pool, ranking, budget, out_dir, name=name, final_dir=final_dir)


@register_exporter("labelstudio-files")
def export_labelstudio_files(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Label Studio tasks with ``file://`` URIs, and their labeling config."""
    return export_labelstudio_tasks(
        pool, ranking, budget, out_dir, name=name, final_dir=final_dir, uris=True
    )
