"""Extraction in this process: DataLoader workers decode, one model encodes.

Images are decoded and resized in DataLoader worker processes while the backbone runs
on the previous batch; batches never straddle two shards, so shards complete in order
and an interrupted run loses at most the shard in progress.

With the model on the CPU and no decoding workers (the default on machines with 2 CPUs
or fewer), this process decodes, and the model runs in *lanes*: one thread per CPU
thread torch would use (at most :data:`MAX_LANES`), each encoding its own batch with one
intra-op thread, results written in batch order. Small inputs leave a model's
intra-op threads waiting on each other and on the Python code between operators;
whole batches side by side keep the cores busy, and decoding the next batch fits in
the gaps (docs/scale.md, "Model lanes").
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geal.engines import ExtractJob
from geal.engines.encode import encode_batch
from geal.internal.device import torch_threads
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


MAX_LANES = 4
"""Most model lanes (measured on 2 cores only; each holds a batch's activations)."""


def default_lanes(device: str, workers: int) -> int:
    """Batches the model encodes at once, one thread each: the CPU threads torch would
    use (at most :data:`MAX_LANES`) when the model runs on the CPU and this process
    decodes, else 1 (the model alone, with all its threads)."""
    if device != "cpu" or workers > 0:
        return 1
    return max(1, min(MAX_LANES, torch.get_num_threads()))


class Lanes:
    """Runs ``encode(indices, images)`` on up to ``n`` batches at once and hands each
    result to ``write(indices, encoded, bad)`` in the order the batches came.

    With ``n`` > 1 torch's intra-op threads are set to 1 while it runs (each lane is one
    thread) and restored on exit; with ``n`` = 1 every batch runs in the caller's thread
    with torch's threads as they are. On an error, batches not started are dropped and
    the ones running finish before the error goes on.
    """

    def __init__(
        self,
        n: int,
        encode: Callable[[list[int], torch.Tensor], Any],
        write: Callable[[list[int], Any, list[tuple[int, str]]], None],
    ):
        self.n = n
        self.encode = encode
        self.write = write
        self.pending: deque[tuple[list[int], Future[Any] | None, list[tuple[int, str]]]] = deque()
        self.executor: ThreadPoolExecutor | None = None
        self.stack = ExitStack()

    def __enter__(self) -> Lanes:
        if self.n > 1:
            self.stack.enter_context(torch_threads(1))
            self.executor = ThreadPoolExecutor(self.n, thread_name_prefix="geal-lane")
        return self

    def put(
        self, indices: list[int], images: torch.Tensor | None, bad: list[tuple[int, str]]
    ) -> None:
        """Queue one batch (``images`` None: every image in it failed to decode)."""
        if self.executor is None:
            self.write(indices, None if images is None else self.encode(indices, images), bad)
            return
        job = None if images is None else self.executor.submit(self.encode, indices, images)
        self.pending.append((indices, job, bad))
        while len(self.pending) > self.n:
            self._write_oldest()

    def _write_oldest(self) -> None:
        indices, job, bad = self.pending.popleft()
        self.write(indices, None if job is None else job.result(), bad)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.executor is None:
            return
        try:
            while kind is None and self.pending:
                self._write_oldest()
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.stack.close()


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

    def encode(indices: list[int], images: torch.Tensor) -> Any:
        images = backbone.preprocess.normalize(images)
        return encode_batch(backbone, images, job.seeds_of(indices), job.options)

    def write(indices: list[int], encoded: Any, bad: list[tuple[int, str]]) -> None:
        for i, err in bad:
            shards.failed(job.pool, i, err)
        if encoded is not None:
            centers, counts, glob, kept = encoded
            for row, i in enumerate(indices):
                shards.add(i, centers[row, : counts[row]], glob[row], int(kept[row]))
        bar.update(len(indices) + len(bad))

    lanes = default_lanes(backbone.device.type, workers)
    with (
        Progress(job.total, unit="img", desc="extract", progress=job.progress) as bar,
        Lanes(lanes, encode, write) as model,
    ):
        for indices, images, bad in loader:
            model.put(indices, images, bad)
