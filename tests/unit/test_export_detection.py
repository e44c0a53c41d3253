"""Detection exporters: mmdetection configs and the ultralytics dataset yaml.

Every written file is parsed back (Python configs are executed, yaml is read) and must
name exactly the selected images.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakes import make_coco, make_folder_pool, make_voc_devkit
from geal.errors import GealError, SelectionError
from geal.export import EXPORTERS, export_mmdet, export_ultralytics
from geal.pools import open_pool
from geal.sampling.base import Ranking


def ranking(order: list[int], *, nested: bool = True) -> Ranking:
    return Ranking(
        order=np.array(order),
        radius=np.zeros(len(order)),
        strategy="prob",
        seed=0,
        nested=nested,
    )


def run_config(path: Path) -> dict[str, Any]:
    """Execute a config in an empty namespace, after checking it imports nothing."""
    text = path.read_text()
    tree = ast.parse(text)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    namespace: dict[str, Any] = {}
    exec(compile(tree, str(path), "exec"), namespace)
    namespace.pop("__builtins__", None)
    return namespace


def read_yaml(path: Path) -> dict[str, Any]:
    """The small yaml subset the exporter writes: scalars and one level of mapping.

    Cross-checked against PyYAML where it is installed.
    """
    doc: dict[str, Any] = {}
    current: dict[Any, Any] | None = None
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        key, _, value = line.strip().partition(":")
        value = value.strip()
        parsed = json.loads(value) if value else None
        if raw.startswith("  ") and current is not None:
            current[int(key)] = parsed
        elif value:
            doc[key] = parsed
            current = None
        else:
            current = {}
            doc[key] = current
    for key, value in list(doc.items()):
        if value == {}:
            doc[key] = None
    try:
        import yaml
    except ImportError:
        return doc
    assert yaml.safe_load(path.read_text()) == doc
    return doc


def test_mmdet_is_a_registered_exporter() -> None:
    assert EXPORTERS["mmdet"] is export_mmdet


# ------------------------------------------------------------------------- mmdet VOC


def test_mmdet_voc_config_trains_ssd300_on_exactly_the_selection(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path / "data", n_per_year=4)
    pool = open_pool(fake.path)
    order = [5, 0, 7, 2, 3]
    out = tmp_path / "out"
    files = export_mmdet(pool, ranking(order), 4, out, name="sel")
    config = out / "mmdet_ssd300_voc0712_sel_4.py"
    assert files[-1] == config
    assert sorted(files[:-1]) == [
        out / "VOC2007" / "ImageSets" / "Main" / "trainval_sel_4.txt",
        out / "VOC2012" / "ImageSets" / "Main" / "trainval_sel_4.txt",
    ]
    cfg = run_config(config)
    assert cfg["_base_"] == "mmdet::pascal_voc/ssd300_voc0712.py"
    devkit = Path(cfg["data_root"])
    assert cfg["data_root"].endswith("/") and (devkit / "VOC2007").is_dir()
    datasets = cfg["train_dataloader"]["dataset"]["dataset"]["datasets"]
    picked: list[str] = []
    for ds in datasets:
        assert ds["type"] == "VOCDataset" and ds["data_root"] == cfg["data_root"]
        assert ds["pipeline"] is cfg["train_pipeline"]
        year_dir = ds["data_prefix"]["sub_data_root"]
        assert (devkit / year_dir / "JPEGImages").is_dir()
        ann_file = Path(ds["ann_file"])
        assert ann_file.is_absolute() and ann_file in files
        picked += [f"{year_dir[3:7]}/{i}" for i in ann_file.read_text().split()]
    assert sorted(picked) == sorted(pool[i].id for i in order[:4])
    # the paper's test set: VOC2007 test, under the same data_root
    val = cfg["val_dataloader"]["dataset"]
    assert val["data_root"] == cfg["data_root"]
    assert val["ann_file"] == "VOC2007/ImageSets/Main/test.txt"
    assert val["data_prefix"] == {"sub_data_root": "VOC2007/"}
    assert cfg["test_dataloader"] is cfg["val_dataloader"]
    augment = [step["type"] for step in cfg["train_pipeline"]]
    assert augment[2:5] == ["Expand", "MinIoURandomCrop", "Resize"]
    assert cfg["train_pipeline"][4]["scale"] == (300, 300)


def test_mmdet_voc_config_lists_only_the_years_picked(tmp_path: Path) -> None:
    pool = open_pool(make_voc_devkit(tmp_path / "data", n_per_year=3).path)
    only_2007 = [i for i in range(len(pool)) if pool[i].subset == "2007"]
    files = export_mmdet(pool, ranking(only_2007), 2, tmp_path / "out")
    cfg = run_config(files[-1])
    [dataset] = cfg["train_dataloader"]["dataset"]["dataset"]["datasets"]
    assert dataset["data_prefix"]["sub_data_root"] == "VOC2007/"
    assert Path(dataset["ann_file"]).read_text().split() == [
        pool[i].id.split("/")[1] for i in only_2007[:2]
    ]


# ------------------------------------------------------------------------ mmdet COCO


def test_mmdet_coco_config_points_at_the_subset_json(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 6)
    pool = open_pool(fake.path)
    order = [4, 1, 3]
    files = export_mmdet(pool, ranking(order), 3, tmp_path / "out")
    subset, config = files
    assert config.name == "mmdet_ssd300_coco_geal_3.py"
    cfg = run_config(config)
    assert cfg["_base_"] == "mmdet::ssd/ssd300_coco.py"
    train = cfg["train_dataloader"]["dataset"]["dataset"]
    assert Path(train["ann_file"]) == subset.absolute()
    doc = json.loads(subset.read_text())
    assert [str(image["id"]) for image in doc["images"]] == [pool[i].id for i in order]
    image_dir = Path(train["data_root"]) / train["data_prefix"]["img"]
    for image in doc["images"]:
        assert (image_dir / image["file_name"]).is_file()
    assert list(cfg["classes"]) == pool.classes
    assert train["metainfo"]["classes"] == cfg["classes"]
    assert cfg["model"]["bbox_head"]["num_classes"] == len(pool.classes or [])
    assert (
        cfg["val_evaluator"]["ann_file"] == cfg["data_root"] + "annotations/instances_val2017.json"
    )


def test_mmdet_needs_a_voc_or_coco_pool(tmp_path: Path) -> None:
    pool = open_pool(make_folder_pool(tmp_path / "imgs", 3).path)
    with pytest.raises(GealError, match="VOC or COCO pool"):
        export_mmdet(pool, ranking([0, 1]), 2, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_mmdet_checks_the_selection_before_writing(tmp_path: Path) -> None:
    pool = open_pool(make_voc_devkit(tmp_path / "data", n_per_year=2).path)
    with pytest.raises(SelectionError, match="budget 5"):
        EXPORTERS["mmdet"](pool, ranking([0, 1, 2]), 5, tmp_path / "out")
    with pytest.raises(SelectionError, match="another pool"):
        EXPORTERS["mmdet"](pool, ranking([0, 9]), 2, tmp_path / "out")
    with pytest.raises(GealError, match="selection name"):
        EXPORTERS["mmdet"](pool, ranking([0, 1]), 1, tmp_path / "out", name="a b")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- ultralytics yaml


def test_ultralytics_yaml_trains_on_the_list_with_the_pool_classes(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 5)
    (tmp_path / "coco" / "val2017").mkdir()
    pool = open_pool(fake.path)
    order = [3, 0, 4]
    txt, yaml_file = export_ultralytics(pool, ranking(order), 2, tmp_path / "out")
    assert yaml_file == tmp_path / "out" / "geal_2.yaml"
    doc = read_yaml(yaml_file)
    assert Path(doc["train"]) == txt.absolute()
    assert Path(doc["train"]).read_text().splitlines() == [pool[i].path for i in order[:2]]
    assert Path(doc["val"]) == (tmp_path / "coco" / "val2017").absolute()
    assert doc["names"] == dict(enumerate(pool.classes or []))


def test_ultralytics_yaml_leaves_val_and_names_to_the_user_when_unknown(tmp_path: Path) -> None:
    pool = open_pool(make_folder_pool(tmp_path / "imgs", 4).path)
    assert not pool.classes
    _, yaml_file = export_ultralytics(pool, ranking([2, 1]), 2, tmp_path / "out")
    doc = read_yaml(yaml_file)
    assert doc["val"] is None and "names" not in doc
    assert "set to your held-out images" in yaml_file.read_text()
