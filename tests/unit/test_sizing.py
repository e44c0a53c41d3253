"""The input side chosen for a pool when none is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes import make_idx, save_image
from geal.backbones.sizing import input_side, typical_side
from geal.extract import extract
from geal.pools import open_pool


@pytest.mark.parametrize(
    ("model_side", "stride", "image_side", "expected"),
    [
        (224, 16, 28, 64),  # digits: 2.3x, whole tokens
        (224, 32, 28, 64),  # a stride-32 CNN: 2 tokens a side
        (224, 32, 8, 64),  # never fewer than 2 tokens a side
        (224, 14, 32, 70),  # CIFAR on a patch-14 ViT: 5 tokens
        (224, 16, 100, 224),  # larger images: the model's own side
        (224, 16, 4000, 224),
        (224, 16, None, 224),  # unknown: the model's own side
    ],
)
def test_input_side(model_side: int, stride: int, image_side: int | None, expected: int) -> None:
    side = input_side(model_side, stride, image_side)
    assert side == expected and side % stride == 0


def test_typical_side_reads_headers_and_skips_unreadable_files(tmp_path: Path) -> None:
    for i, (w, h) in enumerate([(30, 20), (28, 28), (40, 10), (26, 25)]):
        save_image(tmp_path / f"{i}.png", np.zeros((h, w, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert typical_side(open_pool(tmp_path)) == 29  # median of 30, 28, 40, 26


def test_extraction_of_small_images_runs_at_a_small_side(tmp_path: Path) -> None:
    pool = open_pool(make_idx(tmp_path, 8).path, split="train")  # 28 px digits
    common = dict(
        model="test_vit", weights="random", device="cpu", precision="fp32", progress=False
    )
    bank, _ = extract(pool, tmp_path / "auto", **common)  # type: ignore[arg-type]
    assert bank.manifest["options"]["image_size"] == 64
    fixed, _ = extract(pool, tmp_path / "fixed", image_size=96, **common)  # type: ignore[arg-type]
    assert fixed.manifest["options"]["image_size"] == 96
