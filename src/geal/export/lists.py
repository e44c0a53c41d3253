"""Plain lists of the selection: pool indices, the ranking as csv, an ultralytics image list.

- ``indices``: ``indices_<name>_<budget>.json``, sorted pool indices (for
  ``torch.utils.data.Subset`` on CIFAR / MNIST style datasets).
- ``csv``: ``ranking.csv``, the whole ranking: rank, index, id, path, radius.
- ``ultralytics``: ``<name>_<budget>.txt``, absolute image paths, one per line, and
  ``<name>_<budget>.yaml``, a dataset file whose ``train`` is that list.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geal._version import __version__
from geal.errors import GealError
from geal.export.base import (
    check_indices,
    check_name,
    final_path,
    register_exporter,
    selected_indices,
)
from geal.internal.io import atomic_write_text
from geal.pools.base import Pool
from geal.sampling.base import Ranking

RANKING_COLUMNS = ("rank", "index", "id", "path", "radius")


@register_exporter("indices")
def export_indices(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Write ``indices_<name>_<budget>.json``: the selected pool indices, sorted."""
    target = Path(out_dir) / f"indices_{check_name(name)}_{budget}.json"
    indices = sorted(selected_indices(pool, ranking, budget).tolist())
    atomic_write_text(target, json.dumps(indices) + "\n")
    return [target]


def write_ranking_csv(pool: Pool, ranking: Ranking, target: str | Path) -> Path:
    """Write a whole ranking as csv (rank from 1, index, id, path, radius) to ``target``.

    A NaN radius (samplers that do not track it) is written as ``nan``.
    """
    check_indices(pool, ranking.order)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RANKING_COLUMNS)
    for rank, (index, radius) in enumerate(
        zip(ranking.order.tolist(), ranking.radius, strict=True), start=1
    ):
        item = pool[index]
        writer.writerow([rank, index, item.id, item.path or "", str(np.float32(radius))])
    return atomic_write_text(target, buf.getvalue())


@register_exporter("csv")
def export_csv(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Write ``ranking.csv`` for the whole ranking (rank from 1, index, id, path, radius).

    ``budget`` and ``name`` do not change this file: one ranking serves every budget.
    """
    return [write_ranking_csv(pool, ranking, Path(out_dir) / "ranking.csv")]


_VAL_NAMES = ("val", "valid", "validation", "val2017", "val2014", "test", "test2017")


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _sibling_val_dir(paths: Sequence[str]) -> Path | None:
    """A held-out image folder beside the selected images' folder (``val2017``, ``test``...)."""
    common = Path(os.path.commonpath([os.path.dirname(p) for p in paths]))
    for candidate in _VAL_NAMES:
        sibling = common.parent / candidate
        if sibling != common and sibling.is_dir():
            return sibling
    return None


@register_exporter("ultralytics")
def export_ultralytics(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Write ``<name>_<budget>.txt`` (absolute image paths, rank order) and a dataset yaml.

    Ultralytics (and most YOLO trainers) accept such a list as the ``train`` entry of a
    dataset yaml; labels are found beside each image as usual (``.../images/x.jpg`` ->
    ``.../labels/x.txt``). ``<name>_<budget>.yaml`` is that dataset file: ``train`` is
    the list (where it will be read: under ``final_dir``), ``val`` a held-out image
    folder beside the images' folder when there is one (``val2017``, ``val``, ``test``,
    ...) and empty otherwise, ``names`` the pool's classes when it knows them.
    """
    stem = f"{check_name(name)}_{budget}"
    target = Path(out_dir) / f"{stem}.txt"
    indices = selected_indices(pool, ranking, budget)
    paths = [pool[index].path for index in indices.tolist()]
    if any(path is None for path in paths):
        raise GealError(
            f"an image list needs image files, but {pool.format} pool {pool.root} stores its "
            "images inside container files; export 'indices' instead"
        )
    absolute = [os.path.abspath(p) for p in paths if p is not None]
    atomic_write_text(target, "".join(f"{p}\n" for p in absolute))

    val = _sibling_val_dir(absolute)
    lines = [
        f"# Ultralytics dataset: the {budget} images of selection {name!r}, written by geal "
        f"{__version__}.",
        "# Train with: yolo detect train data=<this file> model=yolov8n.pt",
        f"train: {_yaml_str(str(final_path(target, out_dir, final_dir)))}",
    ]
    if val is not None:
        lines.append(f"val: {_yaml_str(str(val))}")
    else:
        lines.append("val:  # set to your held-out images: a folder, or a list file like train")
    if pool.classes:
        lines.append("names:")
        lines += [f"  {k}: {_yaml_str(c)}" for k, c in enumerate(pool.classes)]
    else:
        lines.append("# names: {0: first-class, 1: second-class}  (set your class names)")
    yaml = Path(out_dir) / f"{stem}.yaml"
    atomic_write_text(yaml, "\n".join(lines) + "\n")
    return [target, yaml]
