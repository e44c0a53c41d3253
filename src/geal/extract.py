"""Single-pass extraction: pool -> backbone -> knowledge clusters -> PatternBank.

:func:`extract` checks the options, builds the backbone, settles the precision and,
holding the bank's lock (a second process asking for the same bank waits, then reuses
it), creates, resumes or rebuilds the bank (:meth:`geal.bank.BankWriter.prepare`: a
killed run resumes at its first missing shard; a changed pool gets a new bank that
reuses the rows of every unchanged image). Images are keyed by content
(:mod:`geal.internal.content`); those still needing the model go to an engine
(:mod:`geal.engines`: ``local`` or ``ray``), which runs it once per batch and writes
the shards. Unreadable images are skipped, counted and listed in ``failed.json``; the
:class:`ExtractSummary` says what was done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geal.bank import BankWriter, PatternBank, bank_lock
from geal.engines import Engine, ExtractJob, get_engine
from geal.engines.shards import STORAGE_DTYPES, ShardAssembler
from geal.internal.cache import bank_dir
from geal.internal.content import content_keys
from geal.internal.device import resolve_precision
from geal.internal.validation import check_choice, check_scalar
from geal.pools.base import Pool

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    """What an extraction did; ``line()`` is the one-line report the CLI prints.

    Attributes:
        bank: the bank directory.
        images: images in the bank (the pool size); ``reused + extracted``.
        patterns: patterns in the bank.
        failed: images that could not be read.
        extracted: images read now (run through the model, or found unreadable).
        seconds: wall time of the call.
        reused_shards: shards an interrupted run had already written.
        failed_items: ``failed.json``'s entries.
        reused: images whose result came from an earlier bank with the same options
            (finished shards, or rows of unchanged content when the pool changed).
        removed: images of the replaced bank that are no longer in the pool.
    """

    bank: Path
    images: int
    patterns: int
    failed: int
    extracted: int
    seconds: float
    reused_shards: int = 0
    failed_items: list[dict[str, Any]] = field(default_factory=list)
    reused: int = 0
    removed: int = 0

    @property
    def images_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        reused = f", {self.reused_shards} shards reused" if self.reused_shards else ""
        split = f" ({self.reused} reused, {self.extracted} extracted)" if self.reused else ""
        removed = f", {self.removed} removed" if self.removed else ""
        return (
            f"{self.images} images{split}, {self.patterns} patterns, {self.failed} failed"
            f"{removed}, {self.seconds:.1f} s, {self.images_per_second:.1f} images/s{reused}"
            f" -> {self.bank}"
        )


def _check_options(
    *,
    image_size: int | None,
    stage: int | None,
    threshold: float,
    clusters: int,
    seed: int,
    batch_size: int,
    workers: int | None,
    dtype: str,
    shard_size: int,
    max_iter: int,
    tol: float,
) -> None:
    """One line per nonsense value, before any model is built or file written."""
    check_choice(dtype, "--dtype", STORAGE_DTYPES)
    if image_size is not None:
        check_scalar(image_size, "--image-size", int, min_val=1)
    if stage is not None:
        check_scalar(stage, "--stage", int, min_val=0)
    check_scalar(threshold, "--threshold", float, min_val=0.0, max_val=1.0, min_inclusive=False)
    check_scalar(clusters, "--clusters", int, min_val=1)
    check_scalar(seed, "--seed", int, min_val=0)
    check_scalar(batch_size, "--batch-size", int, min_val=1)
    if workers is not None:
        check_scalar(workers, "--workers", int, min_val=0)
    check_scalar(shard_size, "--shard-size", int, min_val=1)
    check_scalar(max_iter, "max_iter", int, min_val=1)
    check_scalar(tol, "tol", float, min_val=0.0)


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
    options from the same pool. When that pool's images changed since, a new bank
    replaces it that takes every unchanged image's rows from it and runs the model on
    the others only (see :meth:`geal.bank.BankWriter.prepare`). A bank made with other
    options or from another pool is an error unless ``overwrite``. While the bank is
    written it is locked: a second process asking for it waits, then reuses it.

    Args:
        pool: the images.
        out: bank directory; ``None`` uses the cache directory keyed by pool and options
            (see :func:`geal.internal.cache.bank_dir`), so a rerun reuses it.
        model, weights, image_size, stage: backbone choice (see
            :func:`geal.backbones.create_backbone`); ``backbone`` passes a built one.
            Without ``image_size`` the model's own side is used, or a smaller one when
            the pool's images are small (:mod:`geal.backbones.sizing`).
        threshold: attention mass kept per image (tau).
        clusters: knowledge clusters per image (K).
        seed: seeds the per-image k-means++ draws.
        batch_size: images per forward pass; does not change the bank.
        workers: decoding processes of the local engine (default: CPUs - 1, at most 8).
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
    from geal.backbones.sizing import typical_side

    run = get_engine(engine)
    _check_options(
        image_size=image_size, stage=stage, threshold=threshold, clusters=clusters, seed=seed,
        batch_size=batch_size, workers=workers, dtype=dtype, shard_size=shard_size,
        max_iter=max_iter, tol=tol,
    )  # fmt: skip
    t0 = time.perf_counter()
    if backbone is None:
        side = typical_side(pool) if image_size is None else None
        backbone = create_backbone(
            model, weights, device, image_size=image_size, stage=stage, image_side=side
        )
    prec = resolve_precision(precision, backbone.device)
    tokens = getattr(backbone, "tokens_per_image", None)
    if tokens is not None and clusters > tokens:
        log.warning(
            "--clusters %d is more than the %d tokens %s gives per %d px image: every image "
            "keeps its kept tokens as its patterns",
            clusters, tokens, backbone.name, backbone.preprocess.image_size,
        )  # fmt: skip
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
        # keyed by pool and options: anything else found there (an older bank format) is
        # this cache's own to replace
        overwrite = True
    out = Path(out)
    with bank_lock(out):
        writer = BankWriter.prepare(
            out, options, pool_desc, len(pool), shard_size, overwrite=overwrite
        )
        if writer.complete:
            bank = PatternBank.open(out)
            reused_shards = int(writer.manifest["n_shards"])
            extracted = 0
        else:
            bank, extracted, reused_shards = _fill(
                writer, pool, backbone, run, options,
                batch_size=batch_size, workers=workers, progress=progress, device=device,
            )  # fmt: skip
    seconds = time.perf_counter() - t0
    summary = ExtractSummary(
        bank=out,
        images=bank.n,
        patterns=bank.n_patterns,
        failed=len(bank.failed),
        extracted=extracted,
        seconds=seconds,
        reused_shards=reused_shards,
        failed_items=bank.failed,
        reused=bank.n - extracted,
        removed=writer.removed,
    )
    return bank, summary


def _fill(
    writer: BankWriter,
    pool: Pool,
    backbone: Any,
    run: Engine,
    options: dict[str, Any],
    **engine: Any,
) -> tuple[PatternBank, int, int]:
    """Write the missing shards: reused rows where the content is known, the model for the
    rest. Returns the finished bank, the images read now and the shards already done."""
    missing = writer.missing_shards()
    done = writer.manifest["n_shards"] - len(missing)
    if done:
        log.info(
            "resuming %s: %d of %d shards already done",
            writer.root, done, writer.manifest["n_shards"],
        )  # fmt: skip
    rows = writer.reusable_rows()
    todo = [i for k in missing for i in range(*writer.shard_range(k))]
    keys = content_keys(pool, todo, rows.known, progress=engine.get("progress"))
    shards = ShardAssembler(
        writer, missing, backbone.dim, options["dtype"], pool=pool, keys=keys, reuse=rows
    )
    indices = shards.to_extract()
    if writer.replacing:
        reused = len(todo) - len(indices) - len(keys.errors)
        writer.removed = writer.replaced - rows.matched(writer.target, {keys.key(i) for i in todo})
        log.info(
            "rebuilding bank %s (%s): %d images reused, %d to extract, %d removed",
            writer.target, writer.why, reused, len(indices) + len(keys.errors), writer.removed,
        )  # fmt: skip
    shards.fill_known()
    job = ExtractJob(
        pool=pool, backbone=backbone, writer=writer, missing=missing, options=options,
        indices=indices, seeds=keys.seeds, keys=keys.keys, shards=shards, **engine,
    )  # fmt: skip
    if indices:
        run(job)
    rows.clear()  # every shard is written: the earlier banks' files can be let go
    bank = writer.finish()
    return bank, len(todo) - shards.reused, done
