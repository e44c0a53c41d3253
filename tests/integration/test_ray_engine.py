"""Ray Data extraction writes the same bank as the local engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
    assert local.failed == remote.failed
    again = PatternBank.open(tmp_path / "ray")
    assert again.manifest["complete"] and again.n == 24
