"""COCO subsets: ``instances_<name>_<budget>.json``, the pool's annotation file cut down."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from geal.errors import GealError
from geal.export.base import check_name, register_exporter, selected_indices
from geal.internal.io import atomic_open
from geal.pools.base import Pool
from geal.sampling.base import Ranking

logger = logging.getLogger(__name__)


@register_exporter("coco")
def export_coco(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Write ``instances_<name>_<budget>.json``: the pool's COCO file cut to the selection.

    ``images`` holds the selected images in rank order and ``annotations`` exactly
    theirs, in the original order; ``categories``, ``info``, ``licenses`` and any other
    top-level key are kept as they are, so category ids still match a full-set model.
    ``final_dir`` is unused (the file names no path of its own).
    """
    from geal.pools.coco import load_coco_json

    annotation_file = pool.meta.get("annotation_file")
    if pool.format != "coco" or annotation_file is None:
        raise GealError(
            f"a COCO subset needs a COCO pool, but {pool.root} is a {pool.format} pool; "
            "export 'indices', 'csv' or 'ultralytics' instead"
        )
    target = Path(out_dir) / f"instances_{check_name(name)}_{budget}.json"
    indices = selected_indices(pool, ranking, budget)
    doc = load_coco_json(annotation_file)
    by_id = {str(image["id"]): image for image in doc["images"]}
    try:
        images = [by_id[pool[index].id] for index in indices.tolist()]
    except KeyError as exc:
        raise GealError(
            f"image {exc.args[0]} of the pool is no longer in {annotation_file}; reopen the pool"
        ) from None
    chosen = {image["id"] for image in images}
    subset = dict(doc)
    subset["images"] = images
    subset["annotations"] = [a for a in doc["annotations"] if a.get("image_id") in chosen]
    with atomic_open(target, "w") as f:
        json.dump(subset, f, separators=(",", ":"))
    logger.info(
        "wrote COCO subset %s: %d images, %d annotations",
        target,
        len(images),
        len(subset["annotations"]),
    )
    return [target]
