"""Split files from a ranking, in the formats the usual trainers and tools read.

Every exporter is a function ``(pool, ranking, budget, out_dir, *, name="geal",
final_dir=None) -> list[Path]`` registered in :data:`EXPORTERS` (see
:mod:`geal.export.base`); it writes the selection of ``budget`` images (the ranking's
first ``budget`` picks) and returns the files written. Files are written atomically,
so a trainer never reads half a split file.

- ``voc``: ``VOC<year>/ImageSets/Main/trainval_<name>_<budget>.txt`` per year, the
  naming of the official GEAL code for VOC07+12 (:mod:`geal.export.voc`).
- ``coco``: ``instances_<name>_<budget>.json``, the pool's annotation file cut down to
  the selected images and their annotations (:mod:`geal.export.coco`).
- ``indices``, ``csv``, ``ultralytics``: sorted pool indices, the whole ranking, an
  image list with its dataset yaml (:mod:`geal.export.lists`).
- ``labelstudio``, ``labelstudio-files``: Label Studio tasks
  ``labelstudio_<name>_<budget>.json`` and a labeling config beside them, with the
  pool's boxes as predictions for COCO and VOC pools (:mod:`geal.export.labelstudio`).
- ``cvat``: a CVAT task request ``cvat_<name>_<budget>.json`` (``cvat-sdk`` model fields),
  its image list and, for COCO and VOC pools, the boxes as a COCO file
  (:mod:`geal.export.cvat`).
- ``mmdet``: the ``voc`` or ``coco`` split files plus an mmdetection 3.x config that
  trains SSD300 on them (:mod:`geal.export.mmdet`).

A new format is a new module in this package whose exporter registers itself with
``@register_exporter("name")`` (from :mod:`geal.export.base`), imported below.
How the selection was made (``selection.json``) is recorded by :mod:`geal.selection`.
"""

from geal.export.base import (
    EXPORTERS,
    Exporter,
    check_formats,
    check_indices,
    check_name,
    register_exporter,
    selected_indices,
)
from geal.export.coco import export_coco
from geal.export.cvat import export_cvat
from geal.export.labelstudio import export_labelstudio, export_labelstudio_files
from geal.export.lists import export_csv, export_indices, export_ultralytics, write_ranking_csv
from geal.export.mmdet import export_mmdet, mmdet_coco_config, mmdet_voc_config
from geal.export.voc import export_voc, voc_split_name

__all__ = [
    "EXPORTERS",
    "Exporter",
    "check_formats",
    "check_indices",
    "check_name",
    "export_coco",
    "export_csv",
    "export_cvat",
    "export_indices",
    "export_labelstudio",
    "export_labelstudio_files",
    "export_mmdet",
    "export_ultralytics",
    "export_voc",
    "mmdet_coco_config",
    "mmdet_voc_config",
    "register_exporter",
    "selected_indices",
    "voc_split_name",
    "write_ranking_csv",
]
