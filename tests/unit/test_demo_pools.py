"""The demo's pools and coverage counting: builtin package images, prefixes, random picks."""

from __future__ import annotations

import importlib.util
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from fakes import make_folder_pool, make_idx
from geal.demo.coverage import coverage, item_sources, random_coverages, random_pick, totals
from geal.demo.pools import first
from geal.pools import detect_format, open_pool
from geal.pools.builtin import SOURCES, class_description, open_builtin_pool, package_data_dir
from geal.pools.idx import read_idx_pool

needs_builtin = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("foolbox", "skimage")),
    reason="pip install 'geal[demo]'",
)


@needs_builtin
def test_builtin_pool_labels_come_from_file_names() -> None:
    pool = open_builtin_pool()
    assert pool.format == "builtin" and pool.classes is not None
    foolbox = [item for item in pool if item.id.startswith("foolbox/")]
    assert len(foolbox) == 100
    names = {"fashionMNIST": "fashion-mnist"}
    for item in foolbox:
        m = re.fullmatch(r"foolbox/([A-Za-z0-9]+)_\d+_(\d+)\.(png|jpg)", item.id)
        assert m is not None
        assert item.label is not None
        assert pool.classes[item.label] == f"{names.get(m[1], m[1])}/{int(m[2])}"
        assert item.path is not None and Path(item.path).name == item.id.split("/", 1)[1]
    skimage = [item for item in pool if item.id.startswith("skimage/")]
    assert len(skimage) >= 10
    assert {item.subset for item in pool} == set(SOURCES)
    assert item_sources(pool) == [item.subset for item in pool]
    assert pool.index_of("foolbox/imagenet_07_609.jpg") >= 0
    assert pool.load(pool.index_of("skimage/coffee.png")).mode == "RGB"


@needs_builtin
def test_builtin_pool_is_never_auto_detected_but_reopens_by_name(tmp_path: Path) -> None:
    folder = package_data_dir("foolbox")
    assert detect_format(folder) == "folder"  # a folder of images stays a folder
    make_folder_pool(tmp_path / "mine", 3)
    assert detect_format(tmp_path / "mine") == "folder"
    again = open_pool(folder, "builtin")
    assert again.ids == open_builtin_pool().ids


def test_class_descriptions_are_readable() -> None:
    assert class_description("cifar100/23") == "cloud"
    assert class_description("cifar10/3") == "cat"
    assert class_description("fashion-mnist/9") == "Ankle boot"
    assert class_description("mnist/7") == "digit 7"
    assert class_description("skimage/coffee") == "coffee"
    assert class_description("imagenet/243") in ("bull mastiff", "243")


def test_first_keeps_a_prefix_and_only_its_pixels(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 40, fashion=True)
    pool = read_idx_pool(fake.path)
    head = first(pool, 7)
    assert len(head) == 7 and head.ids == fake.ids[:7] and head.classes == pool.classes
    np.testing.assert_array_equal(np.asarray(head.load(6)), fake.images[6])
    assert len(pickle.dumps(head)) < len(pickle.dumps(pool))  # workers get 7 images, not 40
    assert first(pool, 100) is pool


def test_coverage_counts_distinct_classes_and_random_picks_are_seeded(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 30, fashion=True)
    pool = read_idx_pool(fake.path)
    pool.meta["source"] = "fashion-mnist"
    labels = [item.label for item in pool]
    cov = coverage(pool, [0, 1, 2])
    assert cov.classes == len({labels[0], labels[1], labels[2]}) and cov.sources == 1
    assert totals(pool).classes == len(set(labels))
    np.testing.assert_array_equal(random_pick(30, 5, 3), random_pick(30, 5, 3))
    assert not np.array_equal(random_pick(30, 5, 3), random_pick(30, 5, 4))
    assert len(set(random_pick(30, 30, 0).tolist())) == 30
    assert [c.classes for c in random_coverages(pool, 30, [0, 1])] == [totals(pool).classes] * 2
