"""Ray Data extraction writes the same bank as the local engine."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import make_folder_pool
from geal.bank import PatternBank
from geal.extract import extract
from geal.pools import open_pool

pytestmark = pytest.mark.ray


def test_ray_bank_equals_local_bank(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    fake = make_folder_pool(tmp_path / "pool", 23)
    (fake.path / "bad.jpg").write_bytes(b"broken")
    pool = open_pool(fake.path)
    opts = dict(model="test_vit", weights="random", image_size=64, precision="fp32", device="cpu",
                shard_size=8, batch_size=5, progress=False, seed=3)  # fmt: skip
    local, _ = extract(pool, tmp_path / "local", workers=0, **opts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote, summary = extract(pool, tmp_path / "ray", engine="ray", **opts)
    finally:
        ray.shutdown()
    assert summary.failed == 1
    assert local.manifest["options"] == remote.manifest["options"]
    assert np.array_equal(local.counts, remote.counts)
    assert np.array_equal(
        local.patterns_array(np.float16).view(np.uint16),
        remote.patterns_array(np.float16).view(np.uint16),
    )
    assert np.array_equal(local.global_features(), remote.global_features())
    assert local.kept_tokens is not None and remote.kept_tokens is not None
    assert np.array_equal(local.kept_tokens, remote.kept_tokens)
    assert local.failed == remote.failed
    assert local.content_sha256 == remote.content_sha256
    again = PatternBank.open(tmp_path / "ray")
    assert again.manifest["complete"] and again.n == 24


def _png(rng: np.random.Generator, size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size + 3, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _parquet(root: Path, files: int, rng: np.random.Generator) -> None:
    """Hub layout: ``files`` train Parquet files of 7 rows (row 3 of the first is garbage)
    and a test split the train pool must not take."""
    datasets = pytest.importorskip("datasets", reason="needs the 'datasets' package (geal[hf])")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    (root / "data").mkdir(parents=True, exist_ok=True)
    for f in range(files):
        rows = [
            {"bytes": b"garbage" if (f, r) == (0, 3) else _png(rng, 20 + r), "path": None}
            for r in range(7)
        ]
        ds = datasets.Dataset.from_dict({"image": rows, "label": list(range(7))}, features=features)
        ds.to_parquet(str(root / "data" / f"train-{f:05d}-of-{files:05d}.parquet"))
    test = [{"bytes": _png(rng, 30), "path": None} for _ in range(3)]
    datasets.Dataset.from_dict({"image": test, "label": [0, 1, 2]}, features=features).to_parquet(
        str(root / "data" / "test-00000-of-00001.parquet")
    )


def _shards(root: Path, rng: np.random.Generator) -> None:
    """WebDataset shards written by ``webdataset``: mixed extensions, a sample without an
    image, a repeated image (two pool items, one content key) and a garbage one."""
    wds = pytest.importorskip("webdataset", reason="needs the 'webdataset' package (geal[wds])")
    root.mkdir(parents=True, exist_ok=True)
    again = _png(rng, 25)
    for s in range(2):
        with wds.TarWriter(str(root / f"shard-{s:06d}.tar")) as sink:
            for k in range(9):
                key = f"s{s}/{k:04d}"
                if k == 4:
                    sink.write({"__key__": key, "txt": "no image"})
                elif k == 6:
                    sink.write({"__key__": key, "png": again, "cls": str(k)})
                elif (s, k) == (1, 2):
                    sink.write({"__key__": key, "jpg": b"garbage"})
                else:
                    sink.write({"__key__": key, "png": _png(rng, 18 + k), "cls": str(k % 3)})


def _same_bank(a: PatternBank, b: PatternBank) -> None:
    assert a.n == b.n and np.array_equal(a.counts, b.counts)
    assert np.array_equal(
        a.patterns_array(np.float16).view(np.uint16), b.patterns_array(np.float16).view(np.uint16)
    )
    ga, gb = a.global_features(), b.global_features()
    assert np.array_equal(ga, gb), np.nonzero((ga != gb).any(1))
    assert [f["index"] for f in a.failed] == [f["index"] for f in b.failed]


def test_ray_reads_parquet_and_webdataset_files_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's own Parquet and WebDataset readers feed the model, only the split's Parquet
    files are read, rows are matched to pool images by content key (reused rows and images
    seen twice are dropped), and the bank is the local engine's."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    rng = np.random.default_rng(0)
    _parquet(tmp_path / "pq", 2, rng)
    _shards(tmp_path / "wds", rng)
    opts = dict(model="test_vit", weights="random", image_size=64, precision="fp32", device="cpu",
                shard_size=4, batch_size=3, progress=False, seed=1)  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        caplog.set_level(logging.INFO, logger="geal.engines.ray")
        wds_pool = open_pool(tmp_path / "wds", "wds")
        remote, summary = extract(wds_pool, tmp_path / "wds-ray", engine="ray", **opts)
        assert summary.failed == 1 and remote.n == 16  # 18 samples, one without an image
        assert "ray: 16 images read from 2 WebDataset files by Ray, 0 through" in caplog.text
        local, _ = extract(wds_pool, tmp_path / "wds-local", workers=0, **opts)
        _same_bank(local, remote)

        pq = open_pool(tmp_path / "pq", "hf")
        assert len(pq) == 14
        extract(pq, tmp_path / "pq-ray", engine="ray", **opts)
        assert "ray: 14 images read from 2 Parquet files by Ray, 0 through the pool" in caplog.text
        # a third file joins the pool: only its rows are read for the model (the rest are
        # reused by content), and the bank equals a fresh local one
        shutil.rmtree(tmp_path / "pq")
        _parquet(tmp_path / "pq", 3, np.random.default_rng(0))
        caplog.clear()
        grown = open_pool(tmp_path / "pq", "hf")
        remote = extract(grown, tmp_path / "pq-ray", engine="ray", **opts)[0]
        assert "ray: 7 images read from 3 Parquet files by Ray, 0 through the pool" in caplog.text
    finally:
        ray.shutdown()
    _same_bank(extract(grown, tmp_path / "pq-local", workers=0, **opts)[0], remote)
