"""Single-pass extraction: pool -> backbone -> knowledge clusters -> PatternBank.

Images are decoded and resized in DataLoader workers; the backbone runs once per batch;
the attention filter and batched k-means turn each image's tokens into at most K
patterns; finished shards are written atomically, so a killed run resumes where it
stopped. Unreadable images are skipped, counted and listed in ``failed.json``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geal.bank import BankWriter, PatternBank
from geal.engines.encode import encode_batch
from geal.engines.shards import STORAGE_DTYPES, ShardAssembler
from geal.errors import GealError
from geal.internal.cache import bank_dir
from geal.internal.progress import Progress
from geal.pools.base import Pool

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class ExtractSummary:
    """What an extraction did; ``line()`` is the one-line report the CLI prints."""

    bank: Path
    images: int
    patterns: int
    failed: int
    extracted: int
    seconds: float
    reused_shards: int = 0
    failed_items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        reused = f", {self.reused_shards} shards reused" if self.reused_shards else ""
        return (
            f"{self.images} images, {self.patterns} patterns, {self.failed} failed, "
            f"{self.seconds:.1f} s, {self.images_per_second:.1f} images/s{reused} -> {self.bank}"
        )


class _PoolImages(Dataset[tuple[int, torch.Tensor | None, str | None]]):
    """Decodes and preprocesses pool images; failures come back as messages, not errors."""

    def __init__(self, pool: Pool, preprocess: Any):
        self.pool = pool
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = self.pool.load(index)
            return index, self.preprocess(image), None
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

    def __init__(self, ranges: list[tuple[int, int]], batch_size: int):
        self.ranges = ranges
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for a, b in self.ranges:
            for s in range(a, b, self.batch_size):
                yield list(range(s, min(s + self.batch_size, b)))

    def __len__(self) -> int:
        return sum((b - a + self.batch_size - 1) // self.batch_size for a, b in self.ranges)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the device has fast bfloat16, else ``fp32``."""
    if precision not in PRECISIONS:
        raise GealError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        try:
            fast = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            fast = False
        return "bf16" if fast else "fp32"
    return "fp32"


def default_workers() -> int:
    return min(8, max(0, (os.cpu_count() or 1) - 1))


def extract(
    pool: Pool,
    out: str | Path | None = None,
    *,
    model: str = "dino_vits16",
    weights: str | None = None,
    image_size: int | None = None,
    stage: int | None = None,
    threshold: float = 0.5,
    clusters: int = 5,
    seed: int = 0,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    dtype: str = "float16",
    shard_size: int = 1024,
    max_iter: int = 100,
    tol: float = 1e-4,
    overwrite: bool = False,
    progress: bool | None = None,
    backbone: Any = None,
    engine: str = "local",
) -> tuple[PatternBank, ExtractSummary]:
    """Extract the knowledge clusters of every image of ``pool`` into a bank at ``out``.

    Reuses (and finishes) a bank already at ``out`` when it was made with the same
    options from the same pool; any other bank there is an error unless ``overwrite``.

    Args:
        pool: the images.
        out: bank directory; ``None`` uses the cache directory keyed by pool and options
            (see :func:`geal.internal.cache.bank_dir`), so a rerun reuses it.
        model, weights, image_size, stage: backbone choice (see
            :func:`geal.backbones.create_backbone`); ``backbone`` passes a built one.
        threshold: attention mass kept per image (tau).
        clusters: knowledge clusters per image (K).
        seed: seeds the per-image k-means++ draws.
        batch_size: images per forward pass; does not change the bank.
        workers: DataLoader decoding processes (default: CPUs - 1, at most 8).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 where fast), ``bf16`` or ``fp32`` autocast.
        dtype: storage dtype of patterns, ``float16`` (half the disk) or ``float32``.
        shard_size: images per shard file (the unit of resuming).
        progress: show a progress bar (default: when stderr is a terminal).
        engine: ``local`` (DataLoader workers + one model in this process) or ``ray``
            (Ray Data: decoding tasks and an actor pool of the backbone, one per GPU or
            a CPU pool; local Ray by default, a cluster through ``RAY_ADDRESS``).
    """
    from geal.backbones import create_backbone

    if engine not in ("local", "ray"):
        raise GealError(f"unknown --engine {engine!r}; use local or ray")
    if dtype not in STORAGE_DTYPES:
        raise GealError(f"unknown --dtype {dtype!r}; use float16 or float32")
    if clusters < 1:
        raise GealError("--clusters must be at least 1")
    if not 0.0 < threshold <= 1.0:
        raise GealError("--threshold must be in (0, 1]")
    if batch_size < 1 or shard_size < 1:
        raise GealError("--batch-size and --shard-size must be positive")
    t0 = time.perf_counter()
    if backbone is None:
        backbone = create_backbone(model, weights, device, image_size=image_size, stage=stage)
    dev = next(iter(backbone.parameters())).device
    prec = resolve_precision(precision, dev)
    options = {
        "model": backbone.name,
        "weights": backbone.weights_id,
        "weights_sha256": backbone.weights_sha256,
        "image_size": backbone.preprocess.image_size,
        "stage": getattr(backbone, "stage", None),
        "threshold": threshold,
        "clusters": clusters,
        "seed": seed,
        "precision": prec,
        "dtype": dtype,
        "max_iter": max_iter,
        "tol": tol,
    }
    pool_desc = pool.describe() | {"fingerprint": pool.fingerprint()}
    if out is None:
        out = bank_dir(pool.root, pool.format, pool_desc.get("split"), options)
    writer = BankWriter.create_or_resume(
        out, options, pool_desc, len(pool), shard_size, overwrite=overwrite
    )
    missing = writer.missing_shards()
    reused = writer.manifest["n_shards"] - len(missing)
    if reused:
        log.info(
            "resuming %s: %d of %d shards already done", out, reused, writer.manifest["n_shards"]
        )
    ranges = [writer.shard_range(k) for k in missing]
    todo = sum(b - a for a, b in ranges)

    if todo and engine == "ray":
        from geal.engines.ray import run_ray

        run_ray(pool, backbone, writer, missing, ranges, options, batch_size, progress, device)
    elif todo:
        _run(pool, backbone, writer, missing, ranges, options, batch_size, workers, progress)
    bank = writer.finish()
    seconds = time.perf_counter() - t0
    summary = ExtractSummary(
        bank=Path(out),
        images=bank.n,
        patterns=bank.n_patterns,
        failed=len(bank.failed),
        extracted=todo,
        seconds=seconds,
        reused_shards=reused,
        failed_items=bank.failed,
    )
    return bank, summary


def _run(
    pool: Pool,
    backbone: Any,
    writer: BankWriter,
    missing: list[int],
    ranges: list[tuple[int, int]],
    options: dict[str, Any],
    batch_size: int,
    workers: int | None,
    progress: bool | None,
) -> None:
    dev = next(iter(backbone.parameters())).device
    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        _PoolImages(pool, backbone.preprocess),
        batch_sampler=_ShardBatches(ranges, batch_size),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
    )
    shards = ShardAssembler(writer, missing, backbone.dim, options["dtype"])
    total = sum(b - a for a, b in ranges)
    with Progress(total, unit="img", desc="extract", progress=progress) as bar:
        for indices, images, bad in loader:
            for i, err in bad:
                shards.failed(pool, i, err)
            if images is not None:
                centers, counts, glob = encode_batch(backbone, images, indices, options)
                for row, i in enumerate(indices):
                    shards.add(i, centers[row, : counts[row]], glob[row])
            bar.update(len(indices) + len(bad))
