"""Engine plumbing: the registry, the job's shard ranges, Ray actors rebuilding the backbone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fakes import make_folder_pool
from geal.backbones import create_backbone
from geal.bank import BankWriter, make_manifest
from geal.engines import ENGINES, ExtractJob, get_engine
from geal.engines.ray import backbone_request
from geal.errors import GealError
from geal.extract import extract
from geal.pools import open_pool


def test_every_registered_engine_has_a_run_function() -> None:
    assert set(ENGINES) == {"local", "ray"}
    for name in ENGINES:
        assert callable(get_engine(name))  # importing the ray module does not need Ray


def test_unknown_engine_is_a_one_line_error_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(GealError, match=r"^unknown --engine 'spark'; use local or ray$"):
        get_engine("spark")
    pool = open_pool(make_folder_pool(tmp_path / "pool", 2).path)
    with pytest.raises(GealError, match="unknown --engine"):
        extract(pool, tmp_path / "bank", engine="spark", weights="random")
    assert not (tmp_path / "bank").exists()


def test_job_covers_exactly_the_missing_shards(tmp_path: Path) -> None:
    writer = BankWriter(tmp_path, make_manifest({}, {}, n=10, dim=None, shard_size=4))
    job = ExtractJob(
        pool=None, backbone=None, writer=writer, missing=[0, 2], options={}, batch_size=3
    )
    assert job.ranges == [(0, 4), (8, 10)]
    assert job.total == 6


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("test_vit", {"image_size": 64}), ("resnet18", {"image_size": 64, "stage": 2})],
)
def test_backbone_request_rebuilds_the_same_model(name: str, kwargs: dict[str, int]) -> None:
    built = create_backbone(name, weights="random", device="cpu", **kwargs)
    again = create_backbone(**backbone_request(built), device="cpu")
    assert (again.name, again.kind, again.dim, again.preprocess) == (
        built.name,
        built.kind,
        built.dim,
        built.preprocess,
    )
    assert getattr(again, "stage", None) == getattr(built, "stage", None)
    assert (again.weights_id, again.weights_sha256) == (built.weights_id, built.weights_sha256)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(again(images).tokens, built(images).tokens)


def test_backbone_request_fetches_hub_weights_by_name() -> None:
    hub = SimpleNamespace(
        name="dino_vits16",
        weights_id="hub:vit_small_patch16_224.dino",
        preprocess=SimpleNamespace(image_size=224),
    )
    assert backbone_request(hub) == {
        "name": "dino_vits16",
        "weights": None,
        "image_size": 224,
        "stage": None,
    }


def test_default_decoding_workers_leave_small_cpu_machines_to_the_model() -> None:
    from geal.engines.local import default_workers

    assert default_workers("cpu", cpus=2) == 0 and default_workers("cpu", cpus=1) == 0
    assert default_workers("cuda", cpus=2) == 1  # a GPU model leaves the CPUs to decoding
    assert default_workers("cpu", cpus=4) == 3 and default_workers("cpu", cpus=64) == 8


def test_model_lanes_only_where_this_process_decodes_for_a_cpu_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geal.engines import local

    monkeypatch.setattr(local.torch, "get_num_threads", lambda: 2)
    assert local.default_lanes("cpu", workers=0) == 2
    assert local.default_lanes("cpu", workers=1) == 1  # decoding workers: one model, all threads
    assert local.default_lanes("cuda", workers=0) == 1
    monkeypatch.setattr(local.torch, "get_num_threads", lambda: 64)
    assert local.default_lanes("cpu", workers=0) == local.MAX_LANES
    monkeypatch.setattr(local.torch, "get_num_threads", lambda: 1)
    assert local.default_lanes("cpu", workers=0) == 1


def _lane_encode(delays: dict[int, float], seen_threads: list[int]):  # type: ignore[no-untyped-def]
    import time

    def encode(indices: list[int], images: torch.Tensor) -> int:
        seen_threads.append(torch.get_num_threads())
        time.sleep(delays.get(indices[0], 0.0))
        if indices[0] == 99:
            raise RuntimeError("model failed on batch 99")
        return int(images.sum())

    return encode


def test_lanes_write_every_batch_in_order_with_one_thread_each() -> None:
    from geal.engines.local import Lanes

    before = torch.get_num_threads()
    threads: list[int] = []
    written: list[tuple[list[int], int | None, list[tuple[int, str]]]] = []
    # early batches take longest, so later ones finish first
    encode = _lane_encode({0: 0.2, 2: 0.1}, threads)
    batches = [([0, 1], torch.full((2,), 1.0)), ([2, 3], torch.full((2,), 2.0)),
               ([4], None), ([5, 6], torch.full((2,), 3.0)), ([7], torch.full((1,), 4.0))]  # fmt: skip
    with Lanes(3, encode, lambda i, e, bad: written.append((i, e, bad))) as lanes:
        for indices, images in batches:
            lanes.put(indices, images, [(4, "broken")] if images is None else [])
    assert written == [([0, 1], 2, []), ([2, 3], 4, []), ([4], None, [(4, "broken")]),
                       ([5, 6], 6, []), ([7], 4, [])]  # fmt: skip
    assert threads == [1, 1, 1, 1] and torch.get_num_threads() == before

    threads.clear()
    written.clear()
    with Lanes(1, encode, lambda i, e, bad: written.append((i, e, bad))) as lanes:
        lanes.put([0], torch.ones(1), [])
        assert written == [([0], 1, [])]  # one lane: written before put returns
    assert threads == [before]


def test_a_failing_lane_stops_the_run_and_gives_the_threads_back() -> None:
    from geal.engines.local import Lanes

    before = torch.get_num_threads()
    written: list[list[int]] = []
    encode = _lane_encode({}, [])
    with (
        pytest.raises(RuntimeError, match="batch 99"),
        Lanes(2, encode, lambda i, e, bad: written.append(i)) as lanes,
    ):
        for first in (0, 99, 200, 300, 400):
            lanes.put([first], torch.ones(1), [])
    assert written == [[0]] and torch.get_num_threads() == before


def test_engine_decodes_large_jpegs_at_the_reduced_scale_the_input_needs(tmp_path: Path) -> None:
    """A photo far larger than the input is decoded at a reduced DCT scale (``Image.draft``),
    through the pool as for a lazily opened file, and not in full first."""
    import numpy as np
    from PIL import Image

    from geal.engines.local import _PoolImages
    from geal.internal.images import decode_bytes

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).resize((1024, 768))
    (tmp_path / "pool").mkdir()
    photo.save(tmp_path / "pool" / "big.jpg", quality=95)
    pool = open_pool(tmp_path / "pool")
    preprocess = create_backbone("efficientnet_lite0", "random", "cpu", image_size=64).preprocess
    _, pixels, err = _PoolImages(pool, preprocess)[0]
    assert err is None and pixels is not None and pixels.dtype == torch.uint8
    x = preprocess.normalize(pixels[None])[0]  # a batch normalised at once: same values
    with Image.open(tmp_path / "pool" / "big.jpg") as lazy:
        assert torch.equal(x, preprocess(lazy))
    full = preprocess(pool.load(0))  # every pixel decoded, then resized: other pixels
    assert not torch.equal(x, full)
    assert pool.load(0, 64).size == (128, 96) and pool.load(0).size == (1024, 768)
    data = (tmp_path / "pool" / "big.jpg").read_bytes()
    assert decode_bytes(data, 64).size == (128, 96) and decode_bytes(data).size == (1024, 768)
