"""Pools from dataset libraries: Hugging Face ``datasets`` and WebDataset shards.

Every dataset here is written by the real library (``datasets``, ``webdataset``), so the
readers are checked against what those libraries produce and how they group samples.
"""

from __future__ import annotations

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
