"""Label Studio export: tasks, image references, percent boxes and the labeling config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakes import make_cifar10, make_coco, make_folder_pool, make_voc_devkit
from geal.export import EXPORTERS
from geal.export.labelstudio import percent_box
from geal.pools import open_pool
from geal.sampling.base import Ranking


def ranking(order: list[int]) -> Ranking:
    return Ranking(order=np.array(order), radius=np.zeros(len(order)), strategy="fds", seed=0)


def export(pool: Any, order: list[int], out: Path, fmt: str = "labelstudio", **kw: Any) -> Any:
    files = EXPORTERS[fmt](pool, ranking(order), len(order), out, name="sel", **kw)
    assert files[0] == out / f"labelstudio_sel_{len(order)}.json"
    assert files[1] == out / f"labelstudio_sel_{len(order)}.xml"
    return json.loads(files[0].read_text()), ET.parse(files[1]).getroot(), files


def control(config: ET.Element) -> tuple[str, list[str]]:
    image = config.find("Image")
    assert image is not None and image.get("name") == "image" and image.get("value") == "$image"
    tag = next(el for el in config if el.tag != "Image")
    assert tag.get("name") == "label" and tag.get("toName") == "image"
    return tag.tag, [el.get("value", "") for el in tag]


def boxes(task: dict[str, Any]) -> list[tuple[str, list[float], int, int]]:
    (prediction,) = task["predictions"]
    out = []
    for result in prediction["result"]:
        assert (result["from_name"], result["to_name"]) == ("label", "image")
        assert result["type"] == "rectanglelabels"
        v = result["value"]
        out.append(
            (
                v["rectanglelabels"][0],
                [round(v[k], 6) for k in ("x", "y", "width", "height")],
                result["original_width"],
                result["original_height"],
            )
        )
    return out


def test_percent_box_by_hand() -> None:
    assert percent_box(10, 20, 30, 40, 200, 100) == {
        "x": 5.0, "y": 20.0, "width": 15.0, "height": 40.0, "rotation": 0,
    }  # fmt: skip
    clipped = percent_box(-10, 90, 50, 50, 200, 100)  # clipped to the image
    assert (clipped["x"], clipped["y"], clipped["width"], clipped["height"]) == (0, 90, 20, 10)


def test_coco_tasks_carry_boxes_in_percent_and_local_files_urls(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 4)
    pool = open_pool(fake.path)
    tasks, config, _ = export(pool, [2, 0, 3], tmp_path / "out")
    assert [t["meta"] for t in tasks] == [
        {"geal_rank": r, "pool_index": i, "id": pool[i].id} for r, i in [(1, 2), (2, 0), (3, 3)]
    ]
    for task, index in zip(tasks, [2, 0, 3], strict=True):
        name = Path(str(pool[index].path)).name
        assert task["data"] == {"image": f"/data/local-files/?d=train2017/{name}"}
        # every fake annotation is [1, 1, 5, 4] on a 12 x 10 image
        found = boxes(task)
        assert found and all(b[1:] == ([8.333333, 10.0, 41.666667, 40.0], 12, 10) for b in found)
        doc = fake.extra["json"]
        names = {c["id"]: c["name"] for c in doc["categories"]}
        expected = [
            names[a["category_id"]]
            for a in doc["annotations"]
            if str(a["image_id"]) == pool[index].id
        ]
        assert [b[0] for b in found] == expected
    tag, labels = control(config)
    assert tag == "RectangleLabels" and labels == pool.classes
    assert (
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={fake.path.absolute()}"
        in (tmp_path / "out" / "labelstudio_sel_3.xml").read_text()
    )


def test_coco_pool_opened_by_its_json_uses_the_folder_above_both(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 3)
    pool = open_pool(fake.path / "annotations" / "instances_train2017.json")
    tasks, _, _ = export(pool, [0], tmp_path / "out")
    assert (
        tasks[0]["data"]["image"]
        == f"/data/local-files/?d=train2017/{Path(str(pool[0].path)).name}"
    )


def test_voc_boxes_are_one_based_inclusive_pixels(tmp_path: Path) -> None:
    pool = open_pool(make_voc_devkit(tmp_path / "data", n_per_year=2).path)
    two = next(i for i in range(len(pool)) if len(pool.annotation(i)["objects"]) == 2)
    tasks, config, _ = export(pool, [two], tmp_path / "out")
    # its objects: dog [1, 2, 8, 9] and person [2, 1, 11, 10] on a 12 x 10 image
    assert boxes(tasks[0]) == [
        ("dog", [0.0, 10.0, 66.666667, 80.0], 12, 10),
        ("person", [8.333333, 0.0, 83.333333, 100.0], 12, 10),
    ]
    year, image_id = pool[two].id.split("/")
    rel = Path(str(pool[two].path)).relative_to(pool.root.absolute()).as_posix()
    assert rel.endswith(f"VOC{year}/JPEGImages/{image_id}.jpg")
    assert tasks[0]["data"]["image"] == f"/data/local-files/?d={rel}"
    assert control(config) == ("RectangleLabels", pool.classes)


def test_folder_pool_local_files_and_file_uris(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "pool", 6, classes=["a b", "c&d"])
    pool = open_pool(fake.path)
    tasks, config, _ = export(pool, [4, 1], tmp_path / "out")
    assert [t["data"]["image"] for t in tasks] == [
        "/data/local-files/?d=" + pool[i].id.replace(" ", "%20").replace("&", "%26") for i in (4, 1)
    ]
    assert all("predictions" not in t for t in tasks)
    assert control(config) == ("Choices", ["a b", "c&d"])
    tasks, _, _ = export(pool, [4, 1], tmp_path / "uri", "labelstudio-files")
    assert [t["data"]["image"] for t in tasks] == [Path(str(pool[i].path)).as_uri() for i in (4, 1)]


def test_container_pool_writes_the_images_where_the_selection_will_be(tmp_path: Path) -> None:
    pool = open_pool(make_cifar10(tmp_path / "cifar", 4).path)
    out, final = tmp_path / "building", tmp_path / "selection"
    tasks, _, files = export(pool, [5, 2], out, final_dir=final)
    pngs = files[2:]
    assert [p.name for p in pngs] == ["000001.png", "000002.png"]
    for task, png, index in zip(tasks, pngs, [5, 2], strict=True):
        assert task["data"]["image"] == f"/data/local-files/?d=labelstudio_sel_2_images/{png.name}"
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(pool.load(index)))
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={final.absolute()}" in files[1].read_text()
    tasks, _, files = export(pool, [5], out, "labelstudio-files", final_dir=final)
    assert tasks[0]["data"]["image"] == (final / "labelstudio_sel_1_images" / "000001.png").as_uri()


# ------------------------------------------------------------ checked by label-studio-sdk

_VALIDATE = """
import json, sys
from label_studio_sdk.label_interface import LabelInterface
config, tasks = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
li = LabelInterface(config)
bad = [
    i for i, t in enumerate(tasks)
    if not li.validate_task({"data": t["data"]})
    or not all(li.validate_prediction(p) for p in t.get("predictions", []))
]
print(json.dumps({"tasks": len(tasks), "bad": bad}))
"""


def sdk_python() -> str:
    """A Python that imports label_studio_sdk: this one, or the one beside
    ``$GEAL_LABEL_STUDIO`` (the server's own environment)."""
    try:
        import label_studio_sdk  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    server = os.environ.get("GEAL_LABEL_STUDIO")
    if not server:
        pytest.skip("label-studio-sdk is not installed and GEAL_LABEL_STUDIO is unset")
    python = Path(server).parent / "python"
    if not python.exists():
        pytest.skip(f"no python beside GEAL_LABEL_STUDIO={server}")
    return str(python)


@pytest.mark.parametrize("kind", ["coco", "voc", "folder"])
def test_label_studio_sdk_accepts_the_tasks_and_config(kind: str, tmp_path: Path) -> None:
    python = sdk_python()
    if kind == "coco":
        pool = open_pool(make_coco(tmp_path / "p", 5).path)
    elif kind == "voc":
        pool = open_pool(make_voc_devkit(tmp_path / "p", n_per_year=3).path)
    else:
        pool = open_pool(make_folder_pool(tmp_path / "p", 5, classes=["x", "y"]).path)
    _, _, files = export(pool, [4, 0, 2], tmp_path / "out")
    script = tmp_path / "validate.py"
    script.write_text(_VALIDATE)
    run = subprocess.run(
        [python, str(script), str(files[1]), str(files[0])],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"tasks": 3, "bad": []}
