"""Pool readers: ids, order, labels and pixels of each format; one clear error per bad input."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakes import (
    FakePool,
    dump_py2,
    make_cifar10,
    make_coco,
    make_folder_pool,
    make_idx,
    make_voc_devkit,
    save_image,
    solid,
)
from geal.errors import GealError, PoolError
from geal.pools import Pool, detect_format, open_pool
from geal.pools.cifar import CifarPool
from geal.pools.idx import IdxPool
from geal.pools.voc import VocPool, read_voc_annotation


def assert_matches(pool: Pool, fake: FakePool) -> None:
    """Ids, indices, labels and every image's pixels are what the fake wrote."""
    assert pool.ids == fake.ids
    assert [item.index for item in pool] == list(range(len(fake.ids)))
    assert [item.label for item in pool] == fake.labels
    if fake.files is not None:
        assert [item.path for item in pool] == [str(f.absolute()) for f in fake.files]
    for index, expected in enumerate(fake.images):
        im = pool.load(index)
        assert im.mode == "RGB"
        got = np.asarray(im, dtype=np.int16)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= fake.tol, f"image {index} ({pool[index].id})"


def assert_pool_error(match_path: Path | str, *args: Any, **kwargs: Any) -> str:
    """``open_pool(*args, **kwargs)`` raises a one-line PoolError naming ``match_path``."""
    with pytest.raises(PoolError) as info:
        open_pool(*args, **kwargs)
    message = str(info.value)
    assert str(match_path) in message
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------- folder


def test_folder_finds_images_recursively_sorted_by_relative_path(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "pool", 10, nested=True)
    pool = open_pool(fake.path)
    assert pool.format == "folder"
    assert pool.classes is None
    assert any("/" in i for i in pool.ids)  # the nested ones are found
    assert all(item.subset is None for item in pool)
    assert_matches(pool, fake)


def test_folder_with_class_subfolders_gets_labels(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "pool", 7, classes=["dog", "cat", "ant"])
    pool = open_pool(fake.path, "folder")
    assert pool.classes == ["ant", "cat", "dog"]
    assert_matches(pool, fake)
    assert pool[pool.index_of("cat/img_001.JPG")].label == 1


def test_folder_with_images_at_two_depths_has_no_classes(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "pool", 4, classes=["a", "b"])
    save_image(fake.path / "top.png", solid(50))
    pool = open_pool(fake.path)
    assert pool.classes is None
    assert all(item.label is None for item in pool)


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    assert "holds no images" in assert_pool_error(tmp_path / "empty", tmp_path / "empty", "folder")
    assert "found no images or known dataset layout" in assert_pool_error(
        tmp_path / "empty", tmp_path / "empty"
    )
    (tmp_path / "bare").mkdir()
    assert "is empty: no images" in assert_pool_error(tmp_path / "bare", tmp_path / "bare")


def _png16(path: Path, pixels: np.ndarray, colour_type: int) -> Path:
    """A 16-bit PNG written by hand (PIL cannot write 16-bit colour): 0 grey, 2 RGB, 6 RGBA."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    h, w = pixels.shape[:2]
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_wide_pixels_are_scaled_by_their_range_not_clipped(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "wide"
    root.mkdir()
    ramp16 = np.array([[0, 257 * 10, 30000, 65535]], np.uint16).repeat(3, 0)
    Image.fromarray(ramp16).save(root / "a_grey16.png")  # PIL reads it back as I;16
    Image.fromarray(ramp16).save(root / "b_grey16.tif")
    Image.fromarray(ramp16.astype(np.int32)).save(root / "c_int32.tif")  # mode I, 16-bit data
    Image.fromarray(np.array([[0, 100, 200, 255]] * 3, np.int32)).save(root / "d_int32_8bit.tif")
    Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]] * 3, np.float32)).save(root / "e_float01.tif")
    Image.fromarray(np.array([[-5.0, 0.0, 5.0, 15.0]] * 3, np.float32)).save(root / "f_float.tif")
    rgb16 = np.zeros((3, 4, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 30000, 257 * 3
    _png16(root / "g_rgb16.png", rgb16, 2)
    pool = open_pool(root)
    assert Image.open(root / "a_grey16.png").mode == "I;16"
    grey = {
        "a_grey16.png": [0, 10, 117, 255],  # 30000 / 257 = 116.7
        "b_grey16.tif": [0, 10, 117, 255],
        "c_int32.tif": [0, 10, 117, 255],
        "d_int32_8bit.tif": [0, 100, 200, 255],
        "e_float01.tif": [0, 64, 128, 255],
        "f_float.tif": [0, 64, 128, 255],  # its own range -5..15
    }
    for name, want in grey.items():
        got = np.asarray(pool.load(pool.index_of(name)))
        assert got.shape == (3, 4, 3) and got.dtype == np.uint8
        assert got[0, :, 0].tolist() == want, name
        assert (got == got[..., :1]).all(), name  # grey in every channel
    rgb = np.asarray(pool.load(pool.index_of("g_rgb16.png")))
    assert rgb[0, 0].tolist() == [255, 117, 3]
    # the model input is built from the same pixels, not from a clipped copy
    from geal.backbones.base import Preprocess

    pre = Preprocess(4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "nearest")
    x = pre(Image.open(root / "a_grey16.png"))
    assert abs(float(x.mean()) - (0 + 10 + 117 + 255) / 4 / 255) < 0.05


# ------------------------------------------------------------------------- list file


def test_txt_list_keeps_order_ids_as_written_and_tolerates_missing_files(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "imgs", 3)
    absolute = fake.files[2].absolute()  # type: ignore[index]
    listing = tmp_path / "pool.txt"
    listing.write_text(
        f"# selected images\n\nimgs/{fake.ids[1]}\n  imgs/{fake.ids[0]}  \n{absolute}\nimgs/gone.png\n"
    )
    assert detect_format(listing) == "list"
    pool = open_pool(listing)
    assert pool.ids == [
        f"imgs/{fake.ids[1]}",
        f"imgs/{fake.ids[0]}",
        str(absolute),
        "imgs/gone.png",
    ]
    assert pool[0].path == str(tmp_path.absolute() / "imgs" / fake.ids[1])
    assert pool[2].path == str(absolute)
    for index, expected in zip(
        range(3), [fake.images[1], fake.images[0], fake.images[2]], strict=True
    ):
        assert np.abs(np.asarray(pool.load(index), np.int16) - expected).max() <= fake.tol
    with pytest.raises(OSError):
        pool.load(3)  # the extractor records it; opening did not fail


def test_csv_list_with_header_reads_class_name_labels(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "imgs", 3)
    listing = tmp_path / "pool.csv"
    listing.write_text(
        "\ufefflabel,path\n"
        f"zebra,imgs/{fake.ids[0]}\nant,imgs/{fake.ids[1]}\nzebra,imgs/{fake.ids[2]}\n"
    )
    pool = open_pool(listing)
    assert pool.format == "list"
    assert pool.classes == ["ant", "zebra"]
    assert [item.label for item in pool] == [1, 0, 1]
    assert pool.ids == [f"imgs/{i}" for i in fake.ids]


def test_csv_list_with_integer_labels_and_headerless_csv(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "imgs", 2)
    (tmp_path / "a.csv").write_text(f"path,label\nimgs/{fake.ids[0]},7\nimgs/{fake.ids[1]},\n")
    pool = open_pool(tmp_path / "a.csv")
    assert pool.classes is None
    assert [item.label for item in pool] == [7, None]
    (tmp_path / "b.csv").write_text(f"imgs/{fake.ids[0]}\nimgs/{fake.ids[1]}\n")
    assert open_pool(tmp_path / "b.csv").ids == [f"imgs/{i}" for i in fake.ids]


def test_list_errors_name_the_list_file(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "imgs", 2)
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("a.png\nb.png\n")
    assert "none of the 2 files" in assert_pool_error(nothing, nothing)
    wide = tmp_path / "wide.csv"
    wide.write_text(f"imgs/{fake.ids[0]},3\n")
    assert "'path' column" in assert_pool_error(wide, wide)
    garbled = tmp_path / "garbled.txt"
    garbled.write_bytes(b"\xff\xfe\x00bad")
    assert "cannot read list file" in assert_pool_error(garbled, garbled)
    comments = tmp_path / "comments.txt"
    comments.write_text("# nothing here\n\n")
    assert "names no images" in assert_pool_error(comments, comments)
    assert "is not a file" in assert_pool_error(tmp_path / "imgs", tmp_path / "imgs", "list")


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "imgs", 2)
    listing = tmp_path / "dup.txt"
    listing.write_text(f"imgs/{fake.ids[0]}\nimgs/{fake.ids[1]}\nimgs/{fake.ids[0]}\n")
    assert "duplicate image id" in assert_pool_error(listing, listing)


# ------------------------------------------------------------------------------- VOC


def test_voc_devkit_reads_years_in_order_then_split_file_order(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path, n_per_year=3)
    pool = open_pool(fake.path)
    assert isinstance(pool, VocPool)
    assert pool.format == "voc"
    assert pool.ids[0] == "2007/000009"  # the split file lists 2007 ids in reverse
    assert [item.subset for item in pool] == ["2007"] * 3 + ["2012"] * 3
    assert pool.meta["split"] == "trainval"
    assert set(pool.meta["years"]) == {"2007", "2012"}
    assert pool.classes is not None and len(pool.classes) == 20
    assert_matches(pool, fake)


@pytest.mark.parametrize("where", ["parent", "year"])
def test_voc_accepts_the_folder_above_and_a_single_year(tmp_path: Path, where: str) -> None:
    fake = make_voc_devkit(tmp_path, n_per_year=2)
    path = tmp_path if where == "parent" else fake.path / "VOC2012"
    assert detect_format(path) == "voc"
    pool = open_pool(path)
    expected = fake.ids if where == "parent" else [i for i in fake.ids if i.startswith("2012/")]
    assert pool.ids == expected


def test_voc_annotations_parse_on_request(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path, n_per_year=3)
    pool = open_pool(fake.path)
    assert isinstance(pool, VocPool)
    for index, item in enumerate(pool):
        ann = pool.annotation(index)
        assert ann["filename"] == item.id.split("/")[1] + ".jpg"
        assert ann["size"] == {"width": 12, "height": 10, "depth": 3}
        want = fake.extra["annotations"][item.id]
        assert [o["name"] for o in ann["objects"]] == [o["name"] for o in want]
        assert [o["bbox"] for o in ann["objects"]] == [[float(v) for v in o["bbox"]] for o in want]
        assert [o["difficult"] for o in ann["objects"]] == [o["difficult"] for o in want]


def test_voc_malformed_annotation_fails_when_read_naming_the_file(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path, n_per_year=2)
    pool = open_pool(fake.path)  # the files break after the pool was opened
    assert isinstance(pool, VocPool)
    bad = pool.annotation_path(0)
    bad.write_text("<annotation><filename>x.jpg</filename><size>")
    with pytest.raises(PoolError, match="malformed XML") as info:
        pool.annotation(0)
    assert str(bad) in str(info.value)
    no_box = pool.annotation_path(1)
    no_box.write_text(
        "<annotation><filename>a.jpg</filename><size><width>3</width><height>2</height></size>"
        "<object><name>dog</name></object></annotation>"
    )
    with pytest.raises(PoolError, match="without <bndbox>") as info:
        read_voc_annotation(no_box)
    assert str(no_box) in str(info.value)
    no_name = pool.annotation_path(2)
    no_name.write_text("<annotation><size><width>3</width><height>2</height></size></annotation>")
    with pytest.raises(PoolError, match="lacks <filename>"):
        read_voc_annotation(no_name)


def test_voc_missing_or_broken_annotations_are_found_at_open_and_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_voc_devkit(tmp_path, n_per_year=3)
    ann07 = fake.path / "VOC2007" / "Annotations"
    ann12 = fake.path / "VOC2012" / "Annotations"
    broken, gone = sorted(ann07.glob("*.xml"))[0], sorted(ann12.glob("*.xml"))[1]
    broken.write_text("<annotation><filename>x.jpg</filename><size>")
    gone.unlink()
    empty = sorted(ann12.glob("*.xml"))[0]
    empty.write_text("<annotation><filename>a.jpg</filename></annotation>")  # lacks <size>
    with caplog.at_level("WARNING", logger="geal.pools.voc"):
        pool = open_pool(fake.path)
    assert isinstance(pool, VocPool)
    assert len(pool) == 6  # every image can still be ranked
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "3 of 6 images" in warnings[0]
    for path in (broken, gone, empty):
        assert path.name in warnings[0]
    assert f"missing: VOC2012/Annotations/{gone.name}" in warnings[0]
    ids = {f"2007/{broken.stem}", f"2012/{gone.stem}", f"2012/{empty.stem}"}
    assert set(pool.bad_annotations) == ids
    assert "malformed XML" in pool.bad_annotations[f"2007/{broken.stem}"]
    assert "lacks <size>" in pool.bad_annotations[f"2012/{empty.stem}"]
    with pytest.raises(PoolError, match="malformed XML"):  # never read as "no objects"
        pool.annotation(pool.index_of(f"2007/{broken.stem}"))
    good = [i for i, item in enumerate(pool) if item.id not in ids]
    assert all(pool.annotation(i)["objects"] for i in good)
    assert set(pool.head(5).bad_annotations) <= ids  # kept by a prefix of the pool


def test_voc_with_sound_annotations_records_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_voc_devkit(tmp_path, n_per_year=2)
    with caplog.at_level("WARNING", logger="geal.pools.voc"):
        pool = open_pool(fake.path)
    assert isinstance(pool, VocPool) and pool.bad_annotations == {}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_voc_split_missing_in_one_year_skips_it_and_in_all_years_is_an_error(
    tmp_path: Path,
) -> None:
    fake = make_voc_devkit(tmp_path, n_per_year=2)
    main07 = fake.path / "VOC2007" / "ImageSets" / "Main"
    (main07 / "trainval_geal_1.txt").write_text("000005\n")
    pool = open_pool(fake.path, split="trainval_geal_1")
    assert pool.ids == ["2007/000005"]
    message = assert_pool_error(fake.path, fake.path, split="test")
    assert str(main07 / "test.txt") in message
    assert str(fake.path / "VOC2012" / "ImageSets" / "Main" / "test.txt") in message


def test_voc_duplicate_id_in_split_file_is_refused(tmp_path: Path) -> None:
    fake = make_voc_devkit(tmp_path, years=("2007",), n_per_year=2)
    split_file = fake.path / "VOC2007" / "ImageSets" / "Main" / "trainval.txt"
    split_file.write_text("000005\n000007\n000005\n")
    assert "twice" in assert_pool_error(split_file, fake.path)


# ------------------------------------------------------------------------------ COCO


@pytest.mark.parametrize("via", ["folder", "json"])
def test_coco_items_sorted_by_image_id_with_categories_in_id_order(
    tmp_path: Path, via: str
) -> None:
    fake = make_coco(tmp_path / "coco", 5)
    path = fake.path if via == "folder" else fake.extra["annotation_file"]
    assert detect_format(path) == "coco"
    pool = open_pool(path)
    assert pool.format == "coco"
    assert pool.ids == sorted(pool.ids, key=int)
    assert pool.classes == ["person", "car", "dog"]
    assert pool.meta["annotation_file"] == str(fake.extra["annotation_file"].absolute())
    assert [item.subset for item in pool] == ["train2017"] * 5
    assert_matches(pool, fake)


def test_coco_split_chooses_among_annotation_files(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 3)
    make_coco(tmp_path / "coco", 2, split="val2017")
    assert "--split" in assert_pool_error(fake.path, fake.path)
    assert len(open_pool(fake.path, split="val2017")) == 2
    assert open_pool(fake.path, split="train2017").ids == fake.ids
    assert "no annotation file for split" in assert_pool_error(
        fake.path, fake.path, split="test2017"
    )


def test_coco_bad_json_names_the_file(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 2)
    annotation_file = fake.extra["annotation_file"]
    annotation_file.write_text('{"images": [')
    assert "not valid JSON" in assert_pool_error(annotation_file, fake.path)
    annotation_file.write_text('{"images": [], "categories": []}')
    assert "'annotations'" in assert_pool_error(annotation_file, annotation_file)


def test_coco_without_image_folder_says_where_it_looked(tmp_path: Path) -> None:
    fake = make_coco(tmp_path / "coco", 2)
    shutil.rmtree(fake.path / "train2017")
    assert "image folder" in assert_pool_error(fake.path / "train2017", fake.path)


# ----------------------------------------------------------------------------- CIFAR


def test_cifar_train_and_test_splits(tmp_path: Path) -> None:
    fake = make_cifar10(tmp_path, 3)
    assert detect_format(tmp_path) == "cifar10"
    pool = open_pool(tmp_path)
    assert isinstance(pool, CifarPool)
    assert pool.classes is not None and pool.classes[1] == "automobile"
    assert len(pool) == 15
    assert pool[4].id == "data_batch_2/1" and pool[4].subset == "data_batch_2"
    assert_matches(pool, fake)
    assert fake.test is not None
    assert_matches(open_pool(fake.extra["folder"], split="test"), fake.test)
    assert len(pool.meta["files"]) == 6  # five batches and batches.meta


def test_cifar_without_meta_uses_the_cifar10_names(tmp_path: Path) -> None:
    make_cifar10(tmp_path, 1, with_meta=False)
    pool = open_pool(tmp_path, "cifar10", split="test")
    assert pool.classes is not None and pool.classes[0] == "airplane" and len(pool.classes) == 10


def test_cifar_pool_pickles_and_loads_in_a_copy(tmp_path: Path) -> None:
    fake = make_cifar10(tmp_path, 2)
    pool = open_pool(tmp_path)
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.ids == pool.ids
    assert np.array_equal(np.asarray(copy.load(7)), fake.images[7])


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("victim", ["data_batch_3", "batches.meta"])
def test_cifar_refuses_a_pickle_that_calls_os_system(tmp_path: Path, victim: str) -> None:
    fake = make_cifar10(tmp_path, 1)
    marker = tmp_path / "pwned"
    target = fake.extra["folder"] / victim
    # Shaped like a real batch, in the same Python 2 encoding, with one poisoned value.
    target.write_bytes(dump_py2({b"labels": [0], b"data": _Exploit(marker)}))
    message = assert_pool_error(target, tmp_path)
    assert "posix.system" in message or "os.system" in message
    assert not marker.exists()


def test_cifar_missing_or_truncated_batch_names_the_file(tmp_path: Path) -> None:
    fake = make_cifar10(tmp_path, 2)
    folder = fake.extra["folder"]
    data = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(data[: len(data) // 2])
    assert "cannot be read as a CIFAR pickle" in assert_pool_error(
        folder / "data_batch_2", tmp_path
    )
    (folder / "data_batch_2").unlink()
    assert "missing" in assert_pool_error(folder / "data_batch_2", tmp_path)
    assert "CIFAR split" in assert_pool_error("'valid'", tmp_path, split="valid")


# ------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_train_and_test_splits(tmp_path: Path, gz: bool) -> None:
    fake = make_idx(tmp_path, 6, gz=gz)
    assert detect_format(fake.path) == "idx"
    pool = open_pool(fake.path)
    assert isinstance(pool, IdxPool)
    assert pool.classes == [str(d) for d in range(10)]
    assert_matches(pool, fake)
    assert fake.test is not None
    assert_matches(open_pool(fake.path, split="test"), fake.test)
    assert_matches(open_pool(fake.path, split="t10k"), fake.test)


def test_idx_fashion_folder_gets_fashion_class_names(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 2, fashion=True)
    pool = open_pool(fake.path)
    assert pool.classes is not None and pool.classes[0] == "T-shirt/top"


def test_idx_single_images_file_finds_its_labels(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 4, gz=False)
    images_file = fake.path / "train-images-idx3-ubyte"
    assert detect_format(images_file) == "idx"
    pool = open_pool(images_file)
    assert_matches(pool, fake)


def test_idx_torchvision_raw_folder_and_dotted_names(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 3, gz=False)
    raw = tmp_path / "MNIST" / "raw"
    raw.parent.mkdir()
    fake.path.rename(raw)
    (raw / "train-images-idx3-ubyte").rename(raw / "train-images.idx3-ubyte")
    assert detect_format(tmp_path / "MNIST") == "idx"
    pool = open_pool(tmp_path / "MNIST")
    assert pool.meta["files"][0].endswith("train-images.idx3-ubyte")
    assert_matches(pool, fake)


def test_idx_memory_mapped_pool_pickles_without_the_pixels(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 40, gz=False)
    pool = open_pool(fake.path)
    blob = pickle.dumps(pool)
    assert len(blob) < 40 * 28 * 28  # the images were not copied into the pickle
    copy = pickle.loads(blob)
    assert np.array_equal(np.asarray(copy.load(39)), fake.images[39])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated_file_names_it(tmp_path: Path, gz: bool) -> None:
    fake = make_idx(tmp_path, 3, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    images_file = fake.path / name
    raw = gzip.decompress(images_file.read_bytes()) if gz else images_file.read_bytes()
    cut = raw[:-100]
    images_file.write_bytes(gzip.compress(cut) if gz else cut)
    assert "truncated" in assert_pool_error(images_file, fake.path)


def test_idx_cut_gzip_download_names_the_file(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 3, gz=True)
    images_file = fake.path / "train-images-idx3-ubyte.gz"
    data = images_file.read_bytes()
    images_file.write_bytes(data[: len(data) // 2])
    assert "truncated or damaged gzip" in assert_pool_error(images_file, fake.path)


def test_idx_label_count_mismatch_names_the_labels_file(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 3, gz=False)
    from fakes import idx_bytes

    labels_file = fake.path / "train-labels-idx1-ubyte"
    labels_file.write_bytes(idx_bytes(np.zeros(2, np.uint8)))
    assert_pool_error(labels_file, fake.path)


# -------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (lambda root: make_folder_pool(root, 2).path, "folder"),
        (lambda root: make_voc_devkit(root, n_per_year=1).path, "voc"),
        (lambda root: make_coco(root, 1).path, "coco"),
        (lambda root: make_cifar10(root, 1).extra["folder"], "cifar10"),
        (lambda root: make_idx(root, 1).path, "idx"),
    ],
)
def test_auto_detection_picks_the_format(
    tmp_path: Path, builder: Callable[[Path], Path], expected: str
) -> None:
    path = builder(tmp_path / "pool")
    assert detect_format(path) == expected
    assert open_pool(path).format == expected


def test_missing_path_and_unknown_format_are_one_line_errors(tmp_path: Path) -> None:
    assert "does not exist" in assert_pool_error(tmp_path / "nope", tmp_path / "nope")
    fake = make_folder_pool(tmp_path / "pool", 1)
    assert "unknown pool format 'tiff-stack'" in assert_pool_error(
        "tiff-stack", fake.path, "tiff-stack"
    )


def test_fingerprint_follows_container_files(tmp_path: Path) -> None:
    fake = make_idx(tmp_path, 3, gz=False)
    first = open_pool(fake.path).fingerprint()
    assert open_pool(fake.path).fingerprint() == first
    labels_file = fake.path / "train-labels-idx1-ubyte"
    data = bytearray(labels_file.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    labels_file.write_bytes(bytes(data))
    os.utime(labels_file, ns=(1, 1))
    assert open_pool(fake.path).fingerprint() != first


def test_voc_split_files_never_list_an_image_whose_annotation_is_broken(tmp_path: Path) -> None:
    import numpy as np

    from geal.export import EXPORTERS
    from geal.pipeline import preflight_exports
    from geal.sampling import Ranking

    fake = make_voc_devkit(tmp_path, n_per_year=3)
    broken = sorted((fake.path / "VOC2007" / "Annotations").glob("*.xml"))[0]
    broken.write_text("<annotation><size>")
    pool = open_pool(fake.path)
    bad = pool.index_of(f"2007/{broken.stem}")
    good = [i for i in range(len(pool)) if i != bad]
    with pytest.raises(GealError, match="annotation is missing or broken"):
        preflight_exports(pool, ["voc"])  # before any extraction
    ranking = Ranking(np.array([bad, *good[:2]]), np.zeros(3, np.float32), "x", 0)
    for fmt in ("voc", "mmdet"):
        with pytest.raises(GealError, match=broken.stem):
            EXPORTERS[fmt](pool, ranking, 3, tmp_path / fmt)
    fine = Ranking(np.array(good[:3]), np.zeros(3, np.float32), "x", 0)
    assert EXPORTERS["voc"](pool, fine, 3, tmp_path / "ok")  # the others still export
