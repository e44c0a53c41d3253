"""CVAT export: the task request read back through cvat-sdk's models, boxes through
pycocotools, and the frames CVAT will name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakes import make_cifar10, make_coco, make_voc_devkit, save_image, solid
from geal.export import EXPORTERS
from geal.pools import open_pool
from geal.sampling.base import Ranking

models = pytest.importorskip(
    "cvat_sdk.models", reason="cvat-sdk is not installed (pip install 'geal[cvat]')"
)
COCO = pytest.importorskip(
    "pycocotools.coco", reason="pycocotools is not installed (geal[eval])"
).COCO


def export(pool: Any, order: list[int], out: Path, **kw: Any) -> tuple[dict[str, Any], list[Path]]:
    ranking = Ranking(order=np.array(order), radius=np.zeros(len(order)), strategy="fds", seed=0)
    files = EXPORTERS["cvat"](pool, ranking, len(order), out, name="sel", **kw)
    assert files[0] == out / f"cvat_sel_{len(order)}.txt"
    assert files[1] == out / f"cvat_sel_{len(order)}.json"
    spec = json.loads(files[1].read_text())
    assert files[0].read_text().splitlines() == spec["resources"]
    return spec, files


def sdk_request(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The task and data requests cvat-sdk would send, built by its own models."""
    task = models.TaskWriteRequest(
        name=spec["task"]["name"],
        labels=[models.PatchedLabelRequest(**label) for label in spec["task"]["labels"]],
    )
    data = models.DataRequest(**spec["data"], server_files=spec["resources"])
    return task, data


def test_coco_pool_gives_rank_ordered_frames_and_its_boxes(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 5)
    pool = open_pool(fake.path)
    order = [3, 0, 4]
    spec, files = export(pool, order, tmp_path / "out")
    task, data = sdk_request(spec)
    assert task.name == "sel_3"
    assert [label.type for label in task.labels] == ["rectangle"] * len(pool.classes or [])
    assert [label.name for label in task.labels] == pool.classes
    assert data.sorting_method.value == "predefined" and data.image_quality == 95
    assert spec["resources"] == [str(Path(str(pool[i].path)).absolute()) for i in order]
    assert spec["annotation_format"] == "COCO 1.0"
    assert Path(spec["annotation_file"]) == files[2].absolute()

    coco = COCO(str(files[2]))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == [
        Path(str(pool[i].path)).name for i in order
    ]
    source = fake.extra["json"]
    names = {c["id"]: c["name"] for c in source["categories"]}
    for image_id, index in enumerate(order, start=1):
        original = int(pool[index].id)
        want = sorted(
            (names[a["category_id"]], a["bbox"])
            for a in source["annotations"]
            if a["image_id"] == original
        )
        got = sorted(
            (coco.cats[a["category_id"]]["name"], a["bbox"])
            for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        )
        assert got == want and want
        assert (coco.imgs[image_id]["width"], coco.imgs[image_id]["height"]) == (12, 10)


def test_voc_boxes_become_zero_based_pixel_boxes(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path, years=("2007",), n_per_year=3)
    pool = open_pool(fake.path)
    spec, files = export(pool, [1, 0], tmp_path / "out")
    coco = COCO(str(files[2]))
    for image_id, index in ((1, 1), (2, 0)):
        ann = pool.annotation(index)  # type: ignore[attr-defined]
        want = [
            [xmin - 1.0, ymin - 1.0, xmax - xmin + 1.0, ymax - ymin + 1.0]
            for obj in ann["objects"]
            for xmin, ymin, xmax, ymax in [obj["bbox"]]
        ]
        got = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))]
        assert got == want and want
    sdk_request(spec)


def test_container_and_clashing_names_are_written_as_frames(tmp_path: Path) -> None:
    fake = make_cifar10(tmp_path / "c", 2)
    pool = open_pool(fake.path)
    final = tmp_path / "final"
    spec, files = export(pool, [5, 1], tmp_path / "out", final_dir=final)
    assert spec["annotation_file"] is None and spec["annotation_format"] is None
    assert [label["name"] for label in spec["task"]["labels"]] == pool.classes
    images = tmp_path / "out" / "cvat_sel_2_images"
    assert files[2:] == [images / "000001.png", images / "000002.png"]
    assert spec["resources"] == [str(final / "cvat_sel_2_images" / f.name) for f in files[2:]]
    assert np.array_equal(np.asarray(Image.open(files[2])), np.asarray(pool.load(5)))
    sdk_request(spec)

    root = tmp_path / "f"
    for n, rel in enumerate(["a/x.png", "b/x.png", "c/y.png"]):
        save_image(root / rel, solid(n))
    pool = open_pool(root)
    order = [pool.index_of("b/x.png"), pool.index_of("a/x.png"), pool.index_of("c/y.png")]
    spec, files = export(pool, order, tmp_path / "out2")
    # copies named by rank, byte for byte the originals
    frames = [Path(r).name for r in spec["resources"]]
    assert frames == ["000001_x.png", "000002_x.png", "000003_y.png"]
    assert files[2].read_bytes() == (root / "b/x.png").read_bytes()
    assert [label["name"] for label in spec["task"]["labels"]] == ["a", "b", "c"]  # ImageFolder
