"""Exporters: every split file read back by the matching reader equals the selection."""

from __future__ import annotations

import csv
import json
import math
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import geal
from fakes import make_cifar10, make_coco, make_folder_pool, make_voc_devkit
from geal.errors import GealError, SelectionError
from geal.export import (
    EXPORTERS,
    check_formats,
    export_coco,
    export_csv,
    export_indices,
    export_ultralytics,
    export_voc,
)
from geal.pools import open_pool
from geal.sampling.base import Ranking
from geal.selection import write_selection_json


def ranking(order: list[int], *, nested: bool = True) -> Ranking:
    n = len(order)
    return Ranking(
        order=np.array(order),
        radius=np.linspace(1, 0, n),
        strategy="fds",
        seed=0,
        params={"clusters": 5},
        nested=nested,
    )


def read_indices(path: Path) -> np.ndarray:
    """Pool indices from an ``indices`` export, refusing anything but distinct indices."""
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


def leftovers(root: Path) -> list[Path]:
    """Temporary files an interrupted atomic write would leave."""
    return [p for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_registry_names_every_exporter() -> None:
    assert set(EXPORTERS) == {
        "voc", "coco", "indices", "csv", "ultralytics", "mmdet", "labelstudio", "labelstudio-files",
        "cvat",
    }  # fmt: skip
    assert check_formats(["voc", "csv"]) == ["voc", "csv"]
    with pytest.raises(GealError, match="unknown export format 'yolo'"):
        check_formats(["voc", "yolo"])
    with pytest.raises(GealError, match="unknown export format 'csv'"):
        check_formats(["csv"], exclude=["csv"])


# ------------------------------------------------------------------------------ VOC


def test_voc_split_files_read_back_to_the_selection_per_year(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path / "data", n_per_year=4)
    pool = open_pool(fake.path)
    rank = ranking([5, 0, 7, 2, 3, 6, 1, 4])
    out = tmp_path / "out"
    files = export_voc(pool, rank, 5, out)
    assert sorted(files) == [
        out / "VOC2007" / "ImageSets" / "Main" / "trainval_geal_5.txt",
        out / "VOC2012" / "ImageSets" / "Main" / "trainval_geal_5.txt",
    ]
    picked = [pool[i] for i in [5, 0, 7, 2, 3]]
    assert files[0].read_text().split() == [
        item.id.split("/")[1] for item in picked if item.subset == "2007"
    ]
    for f in files:
        year_dir = f.parents[2].name
        shutil.copy(f, fake.path / year_dir / "ImageSets" / "Main" / f.name)
    back = open_pool(fake.path, split="trainval_geal_5")
    expected = [i.id for i in picked if i.subset == "2007"] + [
        i.id for i in picked if i.subset == "2012"
    ]
    assert back.ids == expected
    assert leftovers(out) == []


def test_voc_writes_only_the_years_picked(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path / "data", n_per_year=3)
    pool = open_pool(fake.path)
    files = export_voc(pool, ranking([1, 2, 4]), 2, tmp_path / "out", name="mine")
    assert [f.relative_to(tmp_path / "out").as_posix() for f in files] == [
        "VOC2007/ImageSets/Main/trainval_mine_2.txt"
    ]


def test_voc_into_devkit_refuses_to_overwrite_a_different_selection(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path / "data", years=("2007",), n_per_year=4)
    pool = open_pool(fake.path)
    [written] = export_voc(pool, ranking([3, 1, 0]), 2, tmp_path / "unused", into_devkit=True)
    assert written == fake.path / "VOC2007" / "ImageSets" / "Main" / "trainval_geal_2.txt"
    assert open_pool(fake.path, split="trainval_geal_2").ids == [pool[3].id, pool[1].id]
    before = written.read_text()
    assert export_voc(pool, ranking([3, 1]), 2, tmp_path, into_devkit=True) == [written]
    with pytest.raises(GealError, match="refusing to overwrite") as info:
        export_voc(pool, ranking([0, 2]), 2, tmp_path, into_devkit=True)
    assert str(written) in str(info.value)
    assert written.read_text() == before
    assert not (tmp_path / "unused").exists()


def test_voc_export_needs_a_voc_pool(tmp_path: Path) -> None:
    pool = open_pool(make_folder_pool(tmp_path / "imgs", 3).path)
    with pytest.raises(GealError, match="need a VOC pool"):
        export_voc(pool, ranking([0, 1]), 1, tmp_path / "out")


# ----------------------------------------------------------------------------- COCO


def test_coco_subset_keeps_exactly_the_selected_images_and_their_annotations(
    tmp_path: Path,
) -> None:
    fake = make_coco(tmp_path / "coco", 6)
    pool = open_pool(fake.path)
    order = [4, 1, 5, 0, 2, 3]
    [target] = export_coco(pool, ranking(order), 3, tmp_path / "out")
    assert target == tmp_path / "out" / "instances_geal_3.json"
    original = fake.extra["json"]
    subset = json.loads(target.read_text())
    chosen = [int(pool[i].id) for i in order[:3]]
    assert [image["id"] for image in subset["images"]] == chosen
    assert subset["annotations"] == [a for a in original["annotations"] if a["image_id"] in chosen]
    assert len(subset["annotations"]) < len(original["annotations"])
    for key in ("categories", "info", "licenses"):
        assert subset[key] == original[key]

    # Beside the original annotations, the COCO reader opens it with the same images.
    copied = shutil.copy(target, fake.path / "annotations" / target.name)
    back = open_pool(copied)
    assert back.ids == [str(i) for i in sorted(chosen)]
    assert back.classes == pool.classes
    for item in back:
        assert np.array_equal(
            np.asarray(back.load(item.index)), np.asarray(pool.load(pool.index_of(item.id)))
        )
    assert leftovers(tmp_path / "out") == []


def test_coco_export_needs_a_coco_pool(tmp_path: Path) -> None:
    make_cifar10(tmp_path / "cifar", 1)
    pool = open_pool(tmp_path / "cifar")
    with pytest.raises(GealError, match="needs a COCO pool"):
        export_coco(pool, ranking([0, 1]), 1, tmp_path / "out")


def test_interrupted_coco_export_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = make_coco(tmp_path / "coco", 3)
    pool = open_pool(fake.path)
    out = tmp_path / "out"

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(KeyboardInterrupt):
        export_coco(pool, ranking([0, 1]), 2, out)
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------- indices, csv


def test_indices_file_reads_back_to_the_selection(tmp_path: Path) -> None:
    make_cifar10(tmp_path / "cifar", 2)
    pool = open_pool(tmp_path / "cifar")
    order = [7, 3, 9, 0, 4]
    [target] = export_indices(pool, ranking(order), 4, tmp_path / "out", name="c10")
    assert target.name == "indices_c10_4.json"
    assert json.loads(target.read_text()) == sorted(order[:4])
    assert read_indices(target).tolist() == sorted(order[:4])
    target.write_text("[1, 1]")
    with pytest.raises(GealError, match="twice"):
        read_indices(target)
    target.write_text('{"a": 1}')
    with pytest.raises(GealError, match=str(target)):
        read_indices(target)


def test_ranking_csv_holds_the_whole_ranking(tmp_path: Path) -> None:
    pool = open_pool(make_folder_pool(tmp_path / "imgs", 5).path)
    rank = ranking([3, 0, 4, 1])
    rank.radius[-1] = np.nan  # samplers that do not track the radius write NaN
    [target] = export_csv(pool, rank, 2, tmp_path / "out")
    assert target == tmp_path / "out" / "ranking.csv"
    with open(target, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["index"]) for r in rows] == [3, 0, 4, 1]
    assert [r["id"] for r in rows] == [pool[i].id for i in [3, 0, 4, 1]]
    assert [r["path"] for r in rows] == [pool[i].path for i in [3, 0, 4, 1]]
    radius = np.array([float(r["radius"]) for r in rows], np.float32)
    assert np.array_equal(radius[:3], rank.radius[:3])
    assert math.isnan(radius[3])


def test_ranking_csv_of_a_container_pool_has_empty_paths(tmp_path: Path) -> None:
    make_cifar10(tmp_path / "cifar", 1)
    pool = open_pool(tmp_path / "cifar")
    [target] = export_csv(pool, ranking([2, 4]), 2, tmp_path)
    rows = list(csv.DictReader(target.read_text().splitlines()))
    assert [(r["id"], r["path"]) for r in rows] == [("data_batch_3/0", ""), ("data_batch_5/0", "")]


# ---------------------------------------------------------------------- ultralytics


def test_ultralytics_list_reads_back_as_a_list_pool(tmp_path: Path) -> None:
    pool = open_pool(make_folder_pool(tmp_path / "imgs", 6, nested=True).path)
    order = [5, 2, 0, 3]
    target, yaml_file = export_ultralytics(pool, ranking(order), 3, tmp_path / "out")
    assert target == tmp_path / "out" / "geal_3.txt"
    assert yaml_file == tmp_path / "out" / "geal_3.yaml"
    lines = target.read_text().splitlines()
    assert all(Path(line).is_absolute() for line in lines)
    back = open_pool(target)
    assert back.format == "list"
    assert back.ids == [pool[i].path for i in order[:3]]
    for k, index in enumerate(order[:3]):
        assert np.array_equal(np.asarray(back.load(k)), np.asarray(pool.load(index)))


def test_ultralytics_refuses_container_pools(tmp_path: Path) -> None:
    make_cifar10(tmp_path / "cifar", 1)
    pool = open_pool(tmp_path / "cifar")
    with pytest.raises(GealError, match="export 'indices' instead"):
        export_ultralytics(pool, ranking([0, 1]), 2, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ shared checks


@pytest.mark.parametrize("kind", ["voc", "indices", "ultralytics"])
def test_budgets_names_and_foreign_rankings_are_checked(tmp_path: Path, kind: str) -> None:
    pool = open_pool(make_voc_devkit(tmp_path / "data", n_per_year=2).path)
    with pytest.raises(SelectionError, match="budget 5"):
        EXPORTERS[kind](pool, ranking([0, 1, 2]), 5, tmp_path / "out")
    with pytest.raises(SelectionError, match="at least 1"):
        EXPORTERS[kind](pool, ranking([0, 1, 2]), 0, tmp_path / "out")
    with pytest.raises(SelectionError, match="another pool"):
        EXPORTERS[kind](pool, ranking([0, 9]), 2, tmp_path / "out")
    with pytest.raises(SelectionError, match="does not nest"):
        EXPORTERS[kind](pool, ranking([0, 1, 2], nested=False), 2, tmp_path / "out")
    with pytest.raises(GealError, match="selection name"):
        EXPORTERS[kind](pool, ranking([0, 1]), 1, tmp_path / "out", name="../up")
    assert not (tmp_path / "out").exists()


def test_selection_json_records_how_the_selection_was_made(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 4)
    pool = open_pool(fake.path)
    rank = ranking([2, 0, 3, 1])
    out = tmp_path / "out"
    files = export_coco(pool, rank, 2, out) + export_csv(pool, rank, 2, out)
    target = write_selection_json(
        out,
        rank,
        [2, 4],
        bank_manifest_hash="abc123",
        pool=pool,
        extra={"command": "geal run"},
        files=files,
    )
    assert target == out / "selection.json"
    doc = json.loads(target.read_text())
    assert doc["strategy"] == "fds" and doc["seed"] == 0 and doc["params"] == {"clusters": 5}
    assert doc["budgets"] == [2, 4] and doc["nested"] is True
    assert doc["bank_manifest_hash"] == "abc123"
    assert doc["pool"] == pool.describe()
    assert doc["geal_version"] == geal.__version__
    created = datetime.fromisoformat(doc["created"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)
    assert doc["files"] == ["instances_geal_2.json", "ranking.csv"]
    assert doc["command"] == "geal run"
    with pytest.raises(SelectionError):
        write_selection_json(out, rank, 9, bank_manifest_hash=None, pool=None)
    assert leftovers(out) == []
