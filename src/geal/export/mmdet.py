"""mmdetection 3.x configs training SSD300 on a selection (the paper's detection protocol).

``mmdet`` writes the ``voc`` or ``coco`` split files plus a config that inherits
mmdetection's own SSD300 recipe and trains on them:
``mmdet_ssd300_voc0712_<name>_<budget>.py`` for VOC07+12,
``mmdet_ssd300_coco_<name>_<budget>.py`` for COCO.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from geal._version import __version__
from geal.errors import GealError
from geal.export.base import check_name, final_path, register_exporter, selected_indices
from geal.export.coco import export_coco
from geal.export.voc import export_voc, voc_split_name, voc_year_dirs
from geal.internal.io import atomic_write_text
from geal.pools.base import Pool
from geal.sampling.base import Ranking

logger = logging.getLogger(__name__)

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
    pool: Pool,
    split_files: Sequence[Path],
    budget: int,
    name: str,
    out_dir: str | Path,
    final_dir: str | Path | None = None,
) -> str:
    """The text of an mmdetection 3.x config training SSD300 (VOC07+12 protocol) on a split.

    Inherits ``mmdet::pascal_voc/ssd300_voc0712.py`` (model, schedule, RepeatDataset x10,
    VOC2007 test with 11-point mAP) and replaces its training datasets by one
    ``VOCDataset`` per year of the selection, each reading the written split file
    (``split_files``, under ``out_dir``) from where it will be read: ``final_dir``,
    when ``out_dir`` is a folder to be renamed there.
    """
    year_dirs = [Path(d) for d in voc_year_dirs(pool).values()]
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
        f"split_root = {_dir_literal(final_dir if final_dir is not None else out)}",
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


def mmdet_coco_config(
    pool: Pool, subset_json: Path, budget: int, name: str, final_json: Path | None = None
) -> str:
    """The text of an mmdetection 3.x config training SSD300 on a COCO subset file.

    Inherits ``mmdet::ssd/ssd300_coco.py`` and points its training dataset at the subset
    json, with the pool's classes (so a custom COCO-format pool trains too); validation
    stays the base config's ``annotations/instances_val2017.json`` under ``data_root``.
    ``final_json`` is where the subset file will be read, if not where it was written.
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
    ann_file = (final_json if final_json is not None else subset_json).absolute().as_posix()
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
        f"            ann_file={ann_file!r},\n"
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
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Write the split files of a VOC or COCO pool and an mmdetection 3.x SSD300 config.

    VOC: the ``voc`` image sets plus ``mmdet_ssd300_voc0712_<name>_<budget>.py``, the
    paper's SSD300 VOC07+12 protocol on the selection (test: VOC2007 test). COCO: the
    ``coco`` subset json plus ``mmdet_ssd300_coco_<name>_<budget>.py``. Each config
    inherits mmdetection's own (``_base_ = 'mmdet::...'``) and sets ``data_root`` to
    where the pool is, so it trains as written on this machine and elsewhere after
    changing ``data_root`` alone.
    """
    check_name(name)
    out = Path(out_dir)
    if pool.format == "voc":
        selected_indices(pool, ranking, budget)  # every check before anything is written
        files = export_voc(pool, ranking, budget, out, name=name)
        text = mmdet_voc_config(pool, files, budget, name, out, final_dir)
        config = out / f"mmdet_ssd300_voc0712_{name}_{budget}.py"
    elif pool.format == "coco" and pool.meta.get("annotation_file"):
        files = export_coco(pool, ranking, budget, out, name=name)
        final_json = final_path(files[0], out, final_dir)
        text = mmdet_coco_config(pool, files[0], budget, name, final_json)
        config = out / f"mmdet_ssd300_coco_{name}_{budget}.py"
    else:
        raise GealError(
            f"an mmdetection config needs a VOC or COCO pool, but {pool.root} is a "
            f"{pool.format} pool; export 'ultralytics' or 'indices' instead"
        )
    atomic_write_text(config, text)
    logger.info("wrote mmdetection config %s", config)
    return [*files, config]
