"""Extraction in this process: DataLoader workers decode, one model encodes.

Images are decoded and resized in DataLoader worker processes while the backbone runs
on the previous batch; batches never straddle two shards, so shards complete in order
and an interrupted run loses at most the shard in progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geal.engines import ExtractJob
from geal.engines.encode import encode_batch
from geal.internal.progress import Progress
from geal.pools.base import Pool


class _PoolImages(Dataset[tuple[int, torch.Tensor | None, str | None]]):
    """Decodes pool images into uint8 model-sized pixels (normalised a batch at a time by
    :func:`run`); failures come back as messages, not errors."""

    def __init__(self, pool: Pool, preprocess: Any):
        self.pool = pool
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = self.pool.load(index, self.preprocess.image_size)
            return index, self.preprocess.pixels(image), None
        except Exception as e:  # any decoding problem is reported per image, never fatal
            return index, None, f"{type(e).__name__}: {e}"


def _collate(
    batch: list[tuple[int, torch.Tensor | None, str | None]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    ok = [(i, x) for i, x, _ in batch if x is not None]
    bad = [(i, err) for i, x, err in batch if x is None and err is not None]
    images = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], images, bad


class _ShardBatches(Sampler[list[int]]):
    """Batches of pool indices that never straddle two shards, shard after shard."""

    def __init__(self, groups: list[list[int]], batch_size: int):
        self.groups = groups
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for group in self.groups:
            for s in range(0, len(group), self.batch_size):
                yield group[s : s + self.batch_size]

    def __len__(self) -> int:
        return sum((len(g) + self.batch_size - 1) // self.batch_size for g in self.groups)


def default_workers(device: str = "cpu", cpus: int | None = None) -> int:
    """Decoding processes when none are asked for: CPUs less one, at most 8; none when
    the model runs on the CPU of a machine with two CPUs or fewer.

    There the model's threads already fill the cores, and a decoding process only takes
    turns from them (docs/scale.md, "Decoding workers on 2 cores": the whole
    ``geal extract`` at 64 px took 0.95 times the wall time of one with a worker).
    """
    cpus = cpus if cpus is not None else os.cpu_count() or 1
    if device == "cpu" and cpus <= 2:
        return 0
    return min(8, max(0, cpus - 1))


def run(job: ExtractJob) -> None:
    """Extract the images ``job.todo`` and write the missing shards."""
    backbone = job.backbone
    workers = default_workers(backbone.device.type) if job.workers is None else job.workers
    loader = DataLoader(
        _PoolImages(job.pool, backbone.preprocess),
        batch_sampler=_ShardBatches(job.by_shard(), job.batch_size),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=backbone.device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
    )
    shards = job.assembler()
    with Progress(job.total, unit="img", desc="extract", progress=job.progress) as bar:
        for indices, images, bad in loader:
            for i, err in bad:
                shards.failed(job.pool, i, err)
            if images is not None:
                images = backbone.preprocess.normalize(images)
                seeds = job.seeds_of(indices)
                centers, counts, glob, kept = encode_batch(backbone, images, seeds, job.options)
                for row, i in enumerate(indices):
                    shards.add(i, centers[row, : counts[row]], glob[row], int(kept[row]))
            bar.update(len(indices) + len(bad))
