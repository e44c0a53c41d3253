"""Pools from dataset libraries: Hugging Face ``datasets`` and WebDataset shards.

Every dataset here is written by the real library (``datasets``, ``webdataset``), so the
readers are checked against what those libraries produce and how they group samples.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakes import make_folder_pool, solid
from geal.errors import PoolError
from geal.pools import detect_format, open_pool

N = 6
CLASSES = ["cat", "dog", "owl"]


def png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(solid(i, (7 + i, 5))).save(buf, format="PNG")
    return buf.getvalue()


def pixels(pool: Any, index: int) -> np.ndarray:
    return np.asarray(pool.load(index))


# ---------------------------------------------------------------- Hugging Face datasets


@pytest.fixture()
def hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    datasets = pytest.importorskip("datasets", reason="needs the 'datasets' package (geal[hf])")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    datasets.disable_progress_bars()
    return datasets


def hf_dataset(datasets: Any, *, with_ids: bool = True, broken: int | None = None) -> Any:
    """N rows: a PNG per row (row ``broken`` holds garbage), labels cycling, ids 100+."""
    columns: dict[str, Any] = {
        "image": [
            {"bytes": b"not an image" if i == broken else png(i), "path": None} for i in range(N)
        ],
        "label": [i % 3 if i != 4 else -1 for i in range(N)],
    }
    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)}
    if with_ids:
        columns["image_id"] = [100 + i for i in range(N)]
        features["image_id"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def check_hf_pool(pool: Any, *, ids: list[str]) -> None:
    assert pool.format == "hf"
    assert pool.ids == ids
    assert pool.classes == CLASSES
    assert [item.label for item in pool] == [0, 1, 2, 0, None, 2]  # -1 is "no label"
    for i in range(N):
        assert np.array_equal(pixels(pool, i), solid(i, (7 + i, 5)))


def test_hf_saved_dataset_reads_ids_labels_and_images(hf: Any, tmp_path: Path) -> None:
    hf_dataset(hf).save_to_disk(str(tmp_path / "saved"))
    assert detect_format(tmp_path / "saved") == "hf"
    check_hf_pool(open_pool(tmp_path / "saved"), ids=[str(100 + i) for i in range(N)])


def test_hf_parquet_folder_in_the_hub_layout_picks_the_split(hf: Any, tmp_path: Path) -> None:
    root = tmp_path / "pq"
    hf_dataset(hf).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    hf_dataset(hf, with_ids=False).select([0, 1]).to_parquet(
        str(root / "data" / "test-00000-of-00001.parquet")
    )
    assert detect_format(root) == "hf"
    pool = open_pool(root)
    check_hf_pool(pool, ids=[str(100 + i) for i in range(N)])
    assert pool.meta["split"] == "train"
    test = open_pool(root, split="test")
    assert test.ids == ["0", "1"]  # no id column: row numbers
    with pytest.raises(PoolError, match="no split 'val'"):
        open_pool(root, split="val")


def test_hf_dataset_dict_and_row_number_ids(hf: Any, tmp_path: Path) -> None:
    hf.DatasetDict({"validation": hf_dataset(hf, with_ids=False)}).save_to_disk(
        str(tmp_path / "dd")
    )
    pool = open_pool(tmp_path / "dd")  # the only split
    check_hf_pool(pool, ids=[str(i) for i in range(N)])
    assert pool.meta["split"] == "validation"


def test_hf_imagefolder_only_when_named_and_keeps_the_files(hf: Any, tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "imgs", 6, classes=["a", "b"])
    assert detect_format(fake.path) == "folder"  # a plain image folder stays a folder
    pool = open_pool(fake.path, "hf")
    folder = open_pool(fake.path)
    assert pool.classes == folder.classes == ["a", "b"]
    assert sorted(str(item.path) for item in pool) == sorted(str(item.path) for item in folder)
    by_path = {item.path: item.label for item in folder}
    assert all(by_path[item.path] == item.label for item in pool)
    i = 3
    j = folder.ids.index(Path(str(pool[i].path)).relative_to(fake.path.absolute()).as_posix())
    assert np.array_equal(pixels(pool, i), pixels(folder, j))
    assert pool.content_key(i) == folder.content_key(j)


def test_hf_is_deterministic_keyed_by_content_and_pickles(hf: Any, tmp_path: Path) -> None:
    hf_dataset(hf).save_to_disk(str(tmp_path / "saved"))
    a, b = open_pool(tmp_path / "saved"), open_pool(tmp_path / "saved")
    assert a.ids == b.ids and a.fingerprint() == b.fingerprint()
    keys = [a.content_key(i) for i in range(N)]
    assert keys == [b.content_key(i) for i in range(N)] and len(set(keys)) == N
    copy = pickle.loads(pickle.dumps(a))
    assert np.array_equal(pixels(copy, 2), pixels(a, 2))
    assert a.head(3).ids == a.ids[:3] and open_pool(tmp_path / "saved").head(3).load(2)


def test_hf_unreadable_row_fails_alone_when_loaded(hf: Any, tmp_path: Path) -> None:
    hf_dataset(hf, broken=2).save_to_disk(str(tmp_path / "saved"))
    pool = open_pool(tmp_path / "saved")
    assert len(pool) == N  # opening does not decode
    with pytest.raises(OSError):
        pool.load(2)
    assert pixels(pool, 3).shape == (5, 10, 3)


def test_hf_without_an_image_column_is_named(hf: Any, tmp_path: Path) -> None:
    hf.Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(PoolError, match="no image column"):
        open_pool(tmp_path / "text")


def write_parquet_split(
    datasets: Any, root: Path, sizes: tuple[int, ...], *, broken: int = -1
) -> Any:
    """Hub layout, written by ``datasets``: a train split of ``len(sizes)`` files holding
    rows of groups of 2 (ids 100+, labels cycling, row ``broken`` garbage) and a test split;
    returns the train rows as ``datasets.load_dataset`` reads them, the reference."""
    n = sum(sizes)
    columns = {
        "image": [{"bytes": b"garbage" if i == broken else png(i), "path": None} for i in range(n)],
        "label": [i % 3 for i in range(n)],
        "image_id": [100 + i for i in range(n)],
    }
    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)}
    features["image_id"] = datasets.Value("int64")
    train = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    start = 0
    for f, size in enumerate(sizes):
        name = f"train-{f:05d}-of-{len(sizes):05d}.parquet"
        train.select(range(start, start + size)).to_parquet(str(root / "data" / name), batch_size=2)
        start += size
    hf_dataset(datasets).select([5]).to_parquet(str(root / "data" / "test-00000-of-00001.parquet"))
    return datasets.load_dataset(str(root), split="train", cache_dir=str(root.parent / "ref-cache"))


def test_hf_parquet_is_read_where_it_lies_not_converted_into_the_cache(
    hf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    hf_dataset(hf).to_parquet(str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))
    hf_dataset(hf).to_parquet(str(tmp_path / "one.parquet"))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the Parquet files were converted into the datasets cache")

    monkeypatch.setattr(hf.builder.DatasetBuilder, "download_and_prepare", refuse)
    monkeypatch.setattr(hf, "load_dataset", refuse)
    columns: list[str] = []

    def spy(read: Any) -> Any:
        def reading(self: Any, *args: Any, **kw: Any) -> Any:
            columns.extend(kw.get("columns") or ["(all)"])
            return read(self, *args, **kw)

        return reading

    for method in ("read", "read_row_group"):
        monkeypatch.setattr(pq.ParquetFile, method, spy(getattr(pq.ParquetFile, method)))
    for root in (tmp_path / "pq", tmp_path / "one.parquet"):
        columns.clear()
        pool = open_pool(root)
        assert set(columns) == {"label", "image_id"}  # opening reads no image bytes
        check_hf_pool(pool, ids=[str(100 + i) for i in range(N)])
        assert pool.dataset is None and pool.meta["split"] == "train"
    cache = tmp_path / "hf-cache"
    assert not list(cache.rglob("*.arrow"))
    assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) == 0  # lock files only


def test_hf_parquet_across_files_and_row_groups_matches_datasets(hf: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ref = write_parquet_split(hf, tmp_path / "pq", (5, 4, 3))
    files = sorted((tmp_path / "pq" / "data").glob("train-*.parquet"))
    assert [pq.ParquetFile(f).metadata.num_row_groups for f in files] == [3, 2, 2]
    pool = open_pool(tmp_path / "pq")
    assert pool.meta["files"] == [str(f.absolute()) for f in files]  # not the test split's
    assert pool.ids == [str(v) for v in ref["image_id"]]
    assert [item.label for item in pool] == ref["label"] and pool.classes == CLASSES
    assert all(item.path is None for item in pool)
    stored = ref.cast_column("image", hf.Image(decode=False))["image"]
    # backwards, so every row group is read again after another one
    for i in reversed(range(len(pool))):
        data = stored[i]["bytes"]
        assert pool.content_key(i) == hashlib.sha256(data).digest()
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(pixels(pool, i), expected)
    assert pool.head(6).ids == pool.ids[:6] and np.array_equal(
        pixels(pool.head(6), 5), solid(5, (12, 5))
    )


def test_hf_parquet_split_choice(hf: Any, tmp_path: Path) -> None:
    for split in ("validation", "test"):
        hf_dataset(hf).to_parquet(
            str(tmp_path / "two" / "data" / f"{split}-00000-of-00001.parquet")
        )
    with pytest.raises(PoolError, match=r"holds splits .*; pass --split with one"):
        open_pool(tmp_path / "two")
    pool = open_pool(tmp_path / "two", split="validation")
    assert pool.meta["split"] == "validation" and len(pool) == N
    assert [Path(f).name for f in pool.meta["files"]] == ["validation-00000-of-00001.parquet"]

    hf_dataset(hf).to_parquet(str(tmp_path / "only" / "data" / "validation-00000-of-00001.parquet"))
    assert open_pool(tmp_path / "only").meta["split"] == "validation"  # the only split
    hf_dataset(hf).to_parquet(str(tmp_path / "plain" / "rows.parquet"))
    assert open_pool(tmp_path / "plain").meta["split"] == "train"  # unnamed files: train
    with pytest.raises(PoolError, match="no split 'test'; it has train"):
        open_pool(tmp_path / "plain" / "rows.parquet", split="test")


def test_hf_parquet_garbage_row_fails_alone_and_the_pool_pickles_by_file_name(
    hf: Any, tmp_path: Path
) -> None:
    write_parquet_split(hf, tmp_path / "pq", (3, 3), broken=2)
    pool = open_pool(tmp_path / "pq")
    empty = len(pickle.dumps(pool))
    with pytest.raises(OSError):
        pool.load(2)
    assert pool.content_key(2) == hashlib.sha256(b"garbage").digest()
    assert np.array_equal(pixels(pool, 3), solid(3, (10, 5)))
    blob = pickle.dumps(pool)  # by file names: the row group just read is not in it
    assert len(blob) == empty and png(3) not in blob
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.ids == pool.ids
    for i in (4, 1, 5):
        assert np.array_equal(pixels(copy, i), pixels(pool, i))


def test_hf_parquet_rows_that_point_at_files_keep_them(hf: Any, tmp_path: Path) -> None:
    fake = make_folder_pool(tmp_path / "imgs", 4)
    folder = open_pool(fake.path)
    files = [str(item.path) for item in folder]
    rows = hf.Dataset.from_dict(
        {"image": [*files, None]}, features=hf.Features({"image": hf.Image()})
    )
    rows.to_parquet(str(tmp_path / "pointing.parquet"))
    pool = open_pool(tmp_path / "pointing.parquet")
    assert [item.path for item in pool] == [*files, None]
    assert np.array_equal(pixels(pool, 1), pixels(folder, 1))
    assert pool.content_key(1) == folder.content_key(1)
    with pytest.raises(PoolError, match="has no image"):
        pool.load(4)


# ------------------------------------------------------------------------ WebDataset


@pytest.fixture()
def wds() -> Any:
    return pytest.importorskip("webdataset", reason="needs the 'webdataset' package (geal[wds])")


def write_shards(wds: Any, root: Path, *, broken: str | None = None) -> list[str]:
    """Two shards with ``webdataset.TarWriter``: 4 + 3 samples, one without an image,
    extensions mixed; returns the keys of the samples that hold an image, in order."""
    root.mkdir(parents=True, exist_ok=True)
    keys = []
    g = 0
    for shard, count in (("shard-000000.tar", 4), ("shard-000001.tar", 3)):
        with wds.TarWriter(str(root / shard)) as sink:
            for k in range(count):
                key = f"s{shard[-5]}/{k:04d}"
                if shard.endswith("1.tar") and k == 1:
                    sink.write({"__key__": key, "txt": "no image here"})
                    continue
                ext = "png" if g % 2 == 0 else "webp"
                data = png(g) if ext == "png" else _webp(g)
                if key == broken:
                    data = b"garbage"
                sink.write({"__key__": key, ext: data, "cls": str(g % 3), "json": {"g": g}})
                keys.append(key)
                g += 1
    return keys


def _webp(g: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(solid(g, (7 + g, 5))).save(buf, format="WEBP", lossless=True)
    return buf.getvalue()


def test_wds_groups_samples_as_webdataset_does(wds: Any, tmp_path: Path) -> None:
    keys = write_shards(wds, tmp_path / "shards")
    assert detect_format(tmp_path / "shards") == "wds"
    pool = open_pool(tmp_path / "shards")
    assert pool.format == "wds"
    assert pool.ids == keys
    urls = [str(p) for p in sorted((tmp_path / "shards").glob("*.tar"))]
    streamed = [
        s
        for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        if "png" in s or "webp" in s
    ]
    assert [s["__key__"] for s in streamed] == pool.ids
    assert [int(s["cls"]) for s in streamed] == [item.label for item in pool]
    assert pool.classes == ["0", "1", "2"]
    for i, sample in enumerate(streamed):
        data = sample.get("png") or sample["webp"]
        assert np.array_equal(
            pixels(pool, i), np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        )
        assert np.array_equal(pixels(pool, i), solid(i, (7 + i, 5)))


def test_wds_single_tar_determinism_content_keys_and_pickle(wds: Any, tmp_path: Path) -> None:
    write_shards(wds, tmp_path / "shards")
    one = tmp_path / "shards" / "shard-000001.tar"
    assert detect_format(one) == "wds"
    pool = open_pool(one)
    assert pool.ids == ["s1/0000", "s1/0002"]
    a, b = open_pool(tmp_path / "shards"), open_pool(tmp_path / "shards")
    assert a.ids == b.ids and a.fingerprint() == b.fingerprint()
    keys = [a.content_key(i) for i in range(len(a))]
    assert keys == [b.content_key(i) for i in range(len(b))] and len(set(keys)) == len(a)
    copy = pickle.loads(pickle.dumps(a))
    assert np.array_equal(pixels(copy, 4), pixels(a, 4))


def test_wds_repeated_keys_across_shards_get_the_shard_name(wds: Any, tmp_path: Path) -> None:
    for shard in ("a.tar", "b.tar"):
        with wds.TarWriter(str(tmp_path / shard)) as sink:
            sink.write({"__key__": "x", "png": png(1)})
    assert open_pool(tmp_path).ids == ["a.tar/x", "b.tar/x"]


def test_wds_unreadable_image_fails_alone_when_loaded(wds: Any, tmp_path: Path) -> None:
    keys = write_shards(wds, tmp_path / "shards", broken="s0/0001")
    pool = open_pool(tmp_path / "shards")
    assert pool.ids == keys
    with pytest.raises(OSError):
        pool.load(1)
    assert pixels(pool, 2).shape == (5, 9, 3)


def test_wds_needs_tar_shards(tmp_path: Path) -> None:
    from geal.pools.wds import read_wds

    with pytest.raises(PoolError, match=r"no \.tar shards"):
        read_wds(tmp_path)


# ------------------------------------------------------------------- through extraction


@pytest.mark.parametrize("kind", ["hf", "wds"])
def test_extraction_lists_the_unreadable_image_and_keeps_the_rest(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geal.backbones import create_backbone
    from geal.extract import extract

    if kind == "hf":
        datasets = pytest.importorskip("datasets", reason="needs 'datasets' (geal[hf])")
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
        hf_dataset(datasets, broken=2).save_to_disk(str(tmp_path / "pool"))
    else:
        write_shards(pytest.importorskip("webdataset", reason="needs 'webdataset' (geal[wds])"),
                     tmp_path / "pool", broken="s0/0002")  # fmt: skip
    pool = open_pool(tmp_path / "pool")
    backbone = create_backbone("test_vit", "random", "cpu", image_size=64)
    bank, summary = extract(
        pool, tmp_path / "bank", backbone=backbone, batch_size=2, workers=1, precision="fp32",
        progress=False,
    )  # fmt: skip
    assert summary.failed == 1 and summary.images == len(pool)
    assert bank.counts[2] == 0 and (np.delete(bank.counts, 2) > 0).all()
