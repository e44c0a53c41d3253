"""Split files from a ranking, in the formats the usual trainers read.

Every exporter is a function ``(pool, ranking, budget, out_dir, *, name="geal") ->
list[Path]`` registered in :data:`EXPORTERS`; it writes the selection of ``budget``
images (the ranking's first ``budget`` picks) and returns the files written. Files are
written atomically, so a trainer never reads half a split file.

- ``voc``: ``VOC<year>/ImageSets/Main/trainval_<name>_<budget>.txt`` per year, the
  naming of the official GEAL code for VOC07+12.
- ``coco``: ``instances_<name>_<budget>.json``, the pool's annotation file cut down to
  the selected images and their annotations (all categories, info and licenses kept).
- ``indices``: ``indices_<name>_<budget>.json``, sorted pool indices (for
  ``torch.utils.data.Subset`` on CIFAR / MNIST style datasets).
- ``csv``: ``ranking.csv``, the whole ranking: rank, index, id, path, radius.
- ``ultralytics``: ``<name>_<budget>.txt``, absolute image paths, one per line, and
  ``<name>_<budget>.yaml``, a dataset file whose ``train`` is that list.
- ``mmdet``: the ``voc`` or ``coco`` split files plus an mmdetection 3.x config that
  trains SSD300 on them (``mmdet_ssd300_voc0712_<name>_<budget>.py`` for VOC07+12,
  ``mmdet_ssd300_coco_<name>_<budget>.py`` for COCO).

:func:`write_selection_json` records how the selection was made next to the files.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from geal._version import __version__
from geal.errors import GealError, SelectionError
from geal.internal.io import atomic_open, atomic_write_text
from geal.pools.base import Pool
from geal.sampling.base import Ranking

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Exporter(Protocol):
    def __call__(
        self, pool: Pool, ranking: Ranking, budget: int, out_dir: str | Path, *, name: str = ...
    ) -> list[Path]: ...


EXPORTERS: dict[str, Exporter] = {}

E = TypeVar("E", bound=Exporter)


def register_exporter(name: str) -> Callable[[E], E]:
    """Decorator adding an exporter to :data:`EXPORTERS` under ``name``."""

    def wrap(fn: E) -> E:
        if name in EXPORTERS:
            raise ValueError(f"exporter {name!r} registered twice")
        EXPORTERS[name] = fn
        return fn

    return wrap


def export(
    kind: str,
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    **options: Any,
) -> list[Path]:
    """Run the exporter registered as ``kind``; a :class:`GealError` names the known ones."""
    if kind not in EXPORTERS:
        raise GealError(f"unknown export format {kind!r}; known: {', '.join(EXPORTERS)}")
    exporter: Callable[..., list[Path]] = EXPORTERS[kind]
    return exporter(pool, ranking, budget, out_dir, name=name, **options)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise GealError(
            f"selection name {name!r} must be letters, digits, '.', '_' or '-' "
            "(it becomes part of file names)"
        )
    return name


def _check_indices(pool: Pool, indices: np.ndarray) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= len(pool)):
        raise SelectionError(
            f"the ranking holds pool index {int(indices.max())} but pool {pool.root} has "
            f"{len(pool)} images; was the ranking made from another pool?"
        )
    if np.unique(indices).size != indices.size:
        raise SelectionError("the ranking picks an image twice")


def selected_indices(pool: Pool, ranking: Ranking, budget: int) -> np.ndarray:
    """Pool indices of the first ``budget`` picks, in rank order, checked against the pool."""
    if budget < 1:
        raise SelectionError(f"budget must be at least 1, not {budget}")
    indices = ranking.selection(budget)
    _check_indices(pool, indices)
    return indices


# ------------------------------------------------------------------------------ VOC


def _voc_year_dirs(pool: Pool) -> dict[str, str]:
    years = pool.meta.get("years")
    if pool.format != "voc" or not isinstance(years, dict):
        raise GealError(
            f"VOC split files need a VOC pool, but {pool.root} is a {pool.format} pool; "
            "export 'indices', 'csv' or 'ultralytics' instead"
        )
    return years


def voc_split_name(name: str, budget: int) -> str:
    """Image-set name of a selection, as the official GEAL code names it."""
    return f"trainval_{_check_name(name)}_{budget}"


@register_exporter("voc")
def export_voc(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    into_devkit: bool = False,
) -> list[Path]:
    """Write ``VOC<year>/ImageSets/Main/trainval_<name>_<budget>.txt`` for each year picked.

    Each file lists that year's selected image ids (no year prefix) in rank order; a VOC
    trainer, or :func:`geal.pools.open_pool` with ``split="trainval_<name>_<budget>"``,
    reads them back.

    Args:
        into_devkit: write into the pool's own devkit (``out_dir`` is then unused),
            refusing to replace an existing file whose content differs.
    """
    year_dirs = _voc_year_dirs(pool)
    split = voc_split_name(name, budget)
    by_year: dict[str, list[str]] = {}
    for index in selected_indices(pool, ranking, budget).tolist():
        item = pool[index]
        assert item.subset is not None  # the VOC reader sets the year on every item
        by_year.setdefault(item.subset, []).append(item.id.split("/", 1)[1])

    targets = []
    for year in sorted(by_year):
        year_dir = Path(year_dirs[year])
        base = year_dir if into_devkit else Path(out_dir) / year_dir.name
        target = base / "ImageSets" / "Main" / f"{split}.txt"
        text = "".join(f"{image_id}\n" for image_id in by_year[year])
        if into_devkit and target.exists() and target.read_text(encoding="utf-8") != text:
            raise GealError(
                f"{target} exists with a different selection; refusing to overwrite it "
                "(choose another --name or remove the file)"
            )
        targets.append((target, text))
    written = [atomic_write_text(target, text) for target, text in targets]
    logger.info("wrote VOC image set %s for years %s", split, ", ".join(sorted(by_year)))
    return written


# ----------------------------------------------------------------------------- COCO


@register_exporter("coco")
def export_coco(
    pool: Pool, ranking: Ranking, budget: int, out_dir: str | Path, *, name: str = "geal"
) -> list[Path]:
    """Write ``instances_<name>_<budget>.json``: the pool's COCO file cut to the selection.

    ``images`` holds the selected images in rank order and ``annotations`` exactly
    theirs, in the original order; ``categories``, ``info``, ``licenses`` and any other
    top-level key are kept as they are, so category ids still match a full-set model.
    """
    from geal.pools.coco import load_coco_json

    annotation_file = pool.meta.get("annotation_file")
    if pool.format != "coco" or annotation_file is None:
        raise GealError(
            f"a COCO subset needs a COCO pool, but {pool.root} is a {pool.format} pool; "
            "export 'indices', 'csv' or 'ultralytics' instead"
        )
    target = Path(out_dir) / f"instances_{_check_name(name)}_{budget}.json"
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


# -------------------------------------------------------------------------- indices


@register_exporter("indices")
def export_indices(
    pool: Pool, ranking: Ranking, budget: int, out_dir: str | Path, *, name: str = "geal"
) -> list[Path]:
    """Write ``indices_<name>_<budget>.json``: the selected pool indices, sorted."""
    target = Path(out_dir) / f"indices_{_check_name(name)}_{budget}.json"
    indices = sorted(selected_indices(pool, ranking, budget).tolist())
    atomic_write_text(target, json.dumps(indices) + "\n")
    return [target]


def read_indices(path: str | Path) -> np.ndarray:
    """Pool indices from an ``indices`` export (or any JSON list of distinct indices).

    Raises:
        GealError: naming the file, when it is unreadable or not a list of distinct
            non-negative integers.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GealError(f"cannot read index file {path}: {exc}") from exc
    if not isinstance(data, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in data
    ):
        raise GealError(f"index file {path} must hold a JSON list of non-negative integers")
    if len(set(data)) != len(data):
        raise GealError(f"index file {path} lists an index twice")
    return np.asarray(data, dtype=np.int64)


# ------------------------------------------------------------------------------ csv


@register_exporter("csv")
def export_csv(
    pool: Pool, ranking: Ranking, budget: int, out_dir: str | Path, *, name: str = "geal"
) -> list[Path]:
    """Write ``ranking.csv`` for the whole ranking (rank from 1, index, id, path, radius).

    ``budget`` and ``name`` do not change this file: one ranking serves every budget.
    """
    target = Path(out_dir) / "ranking.csv"
    _check_indices(pool, ranking.order)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rank", "index", "id", "path", "radius"])
    for rank, (index, radius) in enumerate(
        zip(ranking.order.tolist(), ranking.radius, strict=True), start=1
    ):
        item = pool[index]
        writer.writerow([rank, index, item.id, item.path or "", str(np.float32(radius))])
    atomic_write_text(target, buf.getvalue())
    return [target]


# ---------------------------------------------------------------------- ultralytics


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
    pool: Pool, ranking: Ranking, budget: int, out_dir: str | Path, *, name: str = "geal"
) -> list[Path]:
    """Write ``<name>_<budget>.txt`` (absolute image paths, rank order) and a dataset yaml.

    Ultralytics (and most YOLO trainers) accept such a list as the ``train`` entry of a
    dataset yaml; labels are found beside each image as usual (``.../images/x.jpg`` ->
    ``.../labels/x.txt``). ``<name>_<budget>.yaml`` is that dataset file: ``train`` is
    the list, ``val`` a held-out image folder beside the images' folder when there is
    one (``val2017``, ``val``, ``test``, ...) and empty otherwise, ``names`` the pool's
    classes when it knows them.
    """
    stem = f"{_check_name(name)}_{budget}"
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
        f"train: {_yaml_str(str(target.absolute()))}",
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


# ----------------------------------------------------------------------- mmdetection

# SSD300 training pipeline of mmdetection 3.x's VOC07+12 recipe (Expand up to 4x with the
# pixel mean, IoU-constrained random crops, 300x300, flips, photometric distortion). The
# year datasets replace the base config's list whole, so the pipeline is restated there.
_MMDET_SSD300_TRAIN_PIPELINE = """\
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Expand', mean=[123.675, 116.28, 103.53], to_rgb=True, ratio_range=(1, 4)),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(300, 300), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18,
    ),
    dict(type='PackDetInputs'),
]
"""


def _dir_literal(path: Path | str) -> str:
    """A Python literal of a folder path ending in '/' (mmdetection joins prefixes so)."""
    text = Path(path).absolute().as_posix().rstrip("/") + "/"
    return repr(text)


def mmdet_voc_config(
    pool: Pool, split_files: Sequence[Path], budget: int, name: str, out_dir: str | Path
) -> str:
    """The text of an mmdetection 3.x config training SSD300 (VOC07+12 protocol) on a split.

    Inherits ``mmdet::pascal_voc/ssd300_voc0712.py`` (model, schedule, RepeatDataset x10,
    VOC2007 test with 11-point mAP) and replaces its training datasets by one
    ``VOCDataset`` per year of the selection, each reading the written split file.
    """
    year_dirs = [Path(d) for d in _voc_year_dirs(pool).values()]
    data_root = sorted(d.parent.absolute() for d in year_dirs)[0]
    out = Path(out_dir).absolute()
    datasets: list[str] = []
    counts = []
    for f in sorted(split_files):
        year_dir = f.parents[2].name  # <out>/VOC2007/ImageSets/Main/<split>.txt
        n = sum(1 for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
        counts.append(f"{n} from {year_dir}")
        datasets += [
            "                dict(",
            "                    type='VOCDataset',",
            "                    data_root=data_root,",
            f"                    ann_file=split_root + {f.absolute().relative_to(out).as_posix()!r},",
            f"                    data_prefix=dict(sub_data_root={year_dir + '/'!r}),",
            "                    filter_cfg=dict(filter_empty_gt=True, min_size=32),",
            "                    pipeline=train_pipeline,",
            "                ),",
        ]
    lines = [
        f"# mmdetection 3.x: SSD300 with the PASCAL VOC07+12 protocol, trained on the {budget}",
        f"# images of selection {name!r} ({', '.join(counts)}); written by geal {__version__}.",
        "#",
        "# Only data_root may need changing: the VOCdevkit folder holding VOC2007/ and VOC2012/.",
        f"# The image sets ({voc_split_name(name, budget)}.txt) are read from split_root, where",
        "# geal wrote them. Train: python tools/train.py THIS_FILE (in an mmdetection checkout)",
        "# or mim train mmdet THIS_FILE. Test: VOC2007 test, 11-point mAP@0.5, as in the base.",
        "",
        "_base_ = 'mmdet::pascal_voc/ssd300_voc0712.py'",
        "",
        f"data_root = {_dir_literal(data_root)}",
        f"split_root = {_dir_literal(out)}",
        "",
        _MMDET_SSD300_TRAIN_PIPELINE,
        "train_dataloader = dict(",
        "    dataset=dict(  # the base config's RepeatDataset",
        "        dataset=dict(  # ConcatDataset: one VOCDataset per year of the selection",
        "            datasets=[",
        *datasets,
        "            ],",
        "        ),",
        "    ),",
        ")",
        "val_dataloader = dict(",
        "    dataset=dict(",
        "        data_root=data_root,",
        "        ann_file='VOC2007/ImageSets/Main/test.txt',",
        "        data_prefix=dict(sub_data_root='VOC2007/'),",
        "    )",
        ")",
        "test_dataloader = val_dataloader",
    ]
    return "\n".join(lines) + "\n"


def mmdet_coco_config(pool: Pool, subset_json: Path, budget: int, name: str) -> str:
    """The text of an mmdetection 3.x config training SSD300 on a COCO subset file.

    Inherits ``mmdet::ssd/ssd300_coco.py`` and points its training dataset at the subset
    json, with the pool's classes (so a custom COCO-format pool trains too); validation
    stays the base config's ``annotations/instances_val2017.json`` under ``data_root``.
    """
    annotation_file = Path(pool.meta["annotation_file"]).absolute()
    here = annotation_file.parent
    data_root = here.parent if here.name == "annotations" else here
    image_dir = Path(pool.meta.get("image_dir") or here).absolute()
    try:
        img_prefix = image_dir.relative_to(data_root).as_posix().rstrip("/") + "/"
    except ValueError:
        img_prefix = image_dir.as_posix().rstrip("/") + "/"
    classes = tuple(pool.classes or ())
    return (
        f"# mmdetection 3.x: SSD300 (COCO recipe) trained on the {budget} images of selection\n"
        f"# {name!r}; written by geal {__version__}.\n"
        "#\n"
        "# data_root is the folder holding annotations/ and the image folders; the training\n"
        "# annotations are the subset file geal wrote (ann_file, an absolute path). Validation:\n"
        "# data_root/annotations/instances_val2017.json (change it for another held-out set).\n"
        "# Train: python tools/train.py THIS_FILE  (mmdetection checkout; or mim train mmdet ...)\n"
        "\n"
        "_base_ = 'mmdet::ssd/ssd300_coco.py'\n"
        "\n"
        f"data_root = {_dir_literal(data_root)}\n"
        f"classes = {classes!r}\n"
        "\n"
        f"model = dict(bbox_head=dict(num_classes={len(classes)}))\n"
        "train_dataloader = dict(\n"
        "    dataset=dict(  # the base config's RepeatDataset\n"
        "        dataset=dict(\n"
        "            data_root=data_root,\n"
        f"            ann_file={subset_json.absolute().as_posix()!r},\n"
        f"            data_prefix=dict(img={img_prefix!r}),\n"
        "            metainfo=dict(classes=classes),\n"
        "        )\n"
        "    )\n"
        ")\n"
        "val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')\n"
        "test_evaluator = val_evaluator\n"
    )


@register_exporter("mmdet")
def export_mmdet(
    pool: Pool, ranking: Ranking, budget: int, out_dir: str | Path, *, name: str = "geal"
) -> list[Path]:
    """Write the split files of a VOC or COCO pool and an mmdetection 3.x SSD300 config.

    VOC: the ``voc`` image sets plus ``mmdet_ssd300_voc0712_<name>_<budget>.py``, the
    paper's SSD300 VOC07+12 protocol on the selection (test: VOC2007 test). COCO: the
    ``coco`` subset json plus ``mmdet_ssd300_coco_<name>_<budget>.py``. Each config
    inherits mmdetection's own (``_base_ = 'mmdet::...'``) and sets ``data_root`` to
    where the pool is, so it trains as written on this machine and elsewhere after
    changing ``data_root`` alone.
    """
    _check_name(name)
    out = Path(out_dir)
    if pool.format == "voc":
        selected_indices(pool, ranking, budget)  # every check before anything is written
        files = export_voc(pool, ranking, budget, out, name=name)
        text = mmdet_voc_config(pool, files, budget, name, out)
        config = out / f"mmdet_ssd300_voc0712_{name}_{budget}.py"
    elif pool.format == "coco" and pool.meta.get("annotation_file"):
        files = export_coco(pool, ranking, budget, out, name=name)
        text = mmdet_coco_config(pool, files[0], budget, name)
        config = out / f"mmdet_ssd300_coco_{name}_{budget}.py"
    else:
        raise GealError(
            f"an mmdetection config needs a VOC or COCO pool, but {pool.root} is a "
            f"{pool.format} pool; export 'ultralytics' or 'indices' instead"
        )
    atomic_write_text(config, text)
    logger.info("wrote mmdetection config %s", config)
    return [*files, config]


# ------------------------------------------------------------------- selection.json


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_selection_json(
    out_dir: str | Path,
    ranking: Ranking,
    budgets: int | Sequence[int],
    *,
    bank_manifest_hash: str | None,
    pool: Pool | None,
    extra: Mapping[str, Any] | None = None,
    files: Sequence[str | Path] = (),
) -> Path:
    """Write ``<out_dir>/selection.json``: how the selection was made and what was written.

    Records strategy, seed, params, budgets, whether budgets nest, the hash of the bank
    manifest the ranking came from, the pool (``pool.describe()``), the package version,
    the UTC creation time and ``files`` (relative to ``out_dir`` when inside it).

    Args:
        extra: more top-level fields; they may not replace the ones above.
    """
    out = Path(out_dir)
    budget_list = sorted({int(b) for b in ([budgets] if isinstance(budgets, int) else budgets)})
    if budget_list and budget_list[-1] > len(ranking):
        ranking.selection(budget_list[-1])  # SelectionError: the ranking is too short
    listed = []
    for f in files:
        p = Path(f)
        try:
            listed.append(p.absolute().relative_to(out.absolute()).as_posix())
        except ValueError:
            listed.append(str(p.absolute()))
    doc: dict[str, Any] = {
        "strategy": ranking.strategy,
        "seed": ranking.seed,
        "params": ranking.params,
        "budgets": budget_list,
        "picks": len(ranking),
        "nested": ranking.nested,
        **({"why_not_nested": ranking.why_not_nested} if ranking.why_not_nested else {}),
        "bank_manifest_hash": bank_manifest_hash,
        "pool": pool.describe() if pool is not None else None,
        "geal_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": listed,
    }
    for key, value in (extra or {}).items():
        if key in doc:
            raise ValueError(f"extra field {key!r} would replace a recorded field")
        doc[key] = value
    target = out / "selection.json"
    atomic_write_text(target, json.dumps(doc, indent=2, default=_json_default) + "\n")
    return target
