"""A labelled evaluation task: pool and test labels, raw images, and banks per backbone.

:func:`build_task` extracts (or reuses from the cache) one bank per backbone and
cluster count for the pool, and the global features of the test images, so that every
strategy selects from the same single pass and reruns cost nothing.
:meth:`Task.from_arrays` builds one from arrays already in memory (tests, notebooks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geal.bank import PatternBank
from geal.errors import GealError
from geal.evaluate.protocols import CNN_RECIPE, LINEAR_RECIPE, CNNRecipe, LinearRecipe, as_nchw
from geal.pools.base import Pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneConfig:
    """One backbone to select with.

    Attributes:
        name: label in the results (e.g. ``efficientnet_lite0`` or ``..-random``).
        model: backbone name for :func:`geal.backbones.create_backbone`.
        weights: None (published weights), ``"random"`` or a checkpoint path.
        image_size: input side in pixels (None: the model's default).
        stage: CNN feature stage (None: the default).
        clusters: the cluster counts K to extract a pool bank for.
        precision: extraction precision (``auto``, ``fp32``, ``bf16``).
    """

    name: str
    model: str
    weights: str | None = None
    image_size: int | None = None
    stage: int | None = None
    clusters: tuple[int, ...] = (1, 5)
    precision: str = "auto"

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BackboneBanks:
    """What one backbone gives a task: pool banks per K and test global features.

    Attributes:
        name: the backbone's label.
        banks: cluster count K -> bank of the pool.
        test_features: global features of the test images ``[T, D]`` (linear probe).
        extract_seconds: K -> ``{"seconds", "cpu_seconds"}`` the pool extraction took
            (wall and CPU) when the bank was made.
        config: how it was made (JSON-ready).
    """

    name: str
    banks: dict[int, PatternBank]
    test_features: np.ndarray | None = None
    extract_seconds: dict[int, dict[str, float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def bank(self, clusters: int | None = None) -> PatternBank:
        """The bank with ``clusters`` patterns per image (None: the largest K)."""
        if not self.banks:
            raise GealError(f"backbone {self.name!r} has no bank")
        k = max(self.banks) if clusters is None else clusters
        if k not in self.banks:
            raise GealError(
                f"backbone {self.name!r} has no K={k} bank; it has K={sorted(self.banks)}"
            )
        return self.banks[k]

    @cached_property
    def pool_features(self) -> np.ndarray:
        """Global feature of every pool image ``[N, D]`` (the same for every K)."""
        return self.bank(min(self.banks)).global_features(np.float32)

    @cached_property
    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and deviation of the pool's global features (linear-probe scaling)."""
        f = self.pool_features.astype(np.float64)
        return f.mean(0), f.std(0)


@dataclass
class Task:
    """Everything the protocols need, held in memory.

    Attributes:
        pool_labels: int label of every pool image ``[N]`` (only read for selected ones).
        test_labels: int label of every test image ``[T]``.
        pool_images: uint8 ``[N, H, W]`` or ``[N, H, W, C]`` for the CNN protocol.
        test_images: the same for the test images.
        backbones: label -> :class:`BackboneBanks`.
        classes: number of classes (default: 1 + the largest label).
        name: a label for the results.
        meta: JSON-ready facts (pool, sizes, cache paths).
        cnn_recipe: protocol (a)'s recipe (change it only for smoke tests).
        linear_recipe: protocol (b)'s recipe.
        cache: memoised evaluations and loop runs (see :mod:`geal.evaluate.curves`).
    """

    pool_labels: np.ndarray
    test_labels: np.ndarray
    pool_images: np.ndarray | None = None
    test_images: np.ndarray | None = None
    backbones: dict[str, BackboneBanks] = field(default_factory=dict)
    classes: int = 0
    name: str = "task"
    meta: dict[str, Any] = field(default_factory=dict)
    cnn_recipe: CNNRecipe = CNN_RECIPE
    linear_recipe: LinearRecipe = LINEAR_RECIPE
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.pool_labels = np.asarray(self.pool_labels, dtype=np.int64)
        self.test_labels = np.asarray(self.test_labels, dtype=np.int64)
        if not self.classes:
            self.classes = int(max(self.pool_labels.max(), self.test_labels.max())) + 1
        for name, bb in self.backbones.items():
            for k, bank in bb.banks.items():
                if bank.n != self.n:
                    raise GealError(
                        f"backbone {name!r} K={k} bank holds {bank.n} images, the pool {self.n}"
                    )
            if bb.test_features is not None and len(bb.test_features) != len(self.test_labels):
                raise GealError(f"backbone {name!r} has test features for another test set")
        for what, imgs, n in (
            ("pool", self.pool_images, self.n),
            ("test", self.test_images, len(self.test_labels)),
        ):
            if imgs is not None and len(imgs) != n:
                raise GealError(f"{len(imgs)} {what} images for {n} {what} labels")

    @property
    def n(self) -> int:
        """Pool size."""
        return int(self.pool_labels.shape[0])

    @cached_property
    def pool_tensor(self) -> torch.Tensor:
        """Pool images as the CNN's float input ``[N, C, H, W]``."""
        if self.pool_images is None:
            raise GealError("this task has no pool images; the cnn protocol needs them")
        return as_nchw(self.pool_images)

    @cached_property
    def test_tensor(self) -> torch.Tensor:
        if self.test_images is None:
            raise GealError("this task has no test images; the cnn protocol needs them")
        return as_nchw(self.test_images)

    def backbone(self, name: str | None = None) -> BackboneBanks:
        """The named backbone (None: the first one)."""
        if not self.backbones:
            raise GealError("this task has no backbone banks")
        if name is None:
            return next(iter(self.backbones.values()))
        if name not in self.backbones:
            raise GealError(f"unknown backbone {name!r}; the task has {', '.join(self.backbones)}")
        return self.backbones[name]

    @classmethod
    def from_arrays(
        cls,
        pool_labels: Sequence[int] | np.ndarray,
        test_labels: Sequence[int] | np.ndarray,
        *,
        pool_images: np.ndarray | None = None,
        test_images: np.ndarray | None = None,
        banks: dict[str, PatternBank | dict[int, PatternBank]] | None = None,
        test_features: dict[str, np.ndarray] | None = None,
        classes: int = 0,
        name: str = "task",
        cnn_recipe: CNNRecipe = CNN_RECIPE,
    ) -> Task:
        """A task from in-memory arrays; ``banks`` maps a backbone label to a bank or K -> bank."""
        bbs: dict[str, BackboneBanks] = {}
        for label, b in (banks or {}).items():
            per_k = b if isinstance(b, dict) else {_clusters_of(b): b}
            tf = (test_features or {}).get(label)
            bbs[label] = BackboneBanks(label, dict(per_k), tf)
        return cls(
            np.asarray(pool_labels),
            np.asarray(test_labels),
            pool_images,
            test_images,
            bbs,
            classes,
            name,
            cnn_recipe=cnn_recipe,
        )


def _clusters_of(bank: PatternBank) -> int:
    k = bank.manifest.get("options", {}).get("clusters")
    return int(k) if k else int(bank.counts.max(initial=1))


def head(pool: Pool, n: int | None) -> Pool:
    """The first ``n`` images of ``pool`` as a pool of their own (all when None)."""
    if n is None:
        return pool
    if n < 1:
        raise GealError(f"pool size must be positive, got {n}")
    return pool.head(n)


def labels_of(pool: Pool) -> np.ndarray:
    """Labels of every item; an error naming the first unlabelled image."""
    out = np.empty(len(pool), dtype=np.int64)
    for item in pool:
        if item.label is None:
            raise GealError(f"image {item.id!r} has no label; evaluation needs a labelled pool")
        out[item.index] = item.label
    return out


def load_images(pool: Pool, *, grey: bool) -> np.ndarray:
    """Every image of ``pool`` as uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]``."""
    from tqdm.auto import tqdm

    first = pool.load(0)
    size = first.size
    shape = (len(pool), size[1], size[0]) + (() if grey else (3,))
    out = np.empty(shape, dtype=np.uint8)
    for i in tqdm(range(len(pool)), unit="img", desc="images", disable=None, leave=False):
        im = pool.load(i)
        if im.size != size:
            raise GealError(
                f"image {pool[i].id!r} is {im.size[0]}x{im.size[1]}, the first is "
                f"{size[0]}x{size[1]}; the cnn protocol needs images of one size"
            )
        out[i] = np.asarray(im.convert("L") if grey else im)
    return out


def _key(pool: Pool, options: dict[str, Any]) -> str:
    blob = json.dumps({"pool": pool.fingerprint(), "opts": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_bank(
    pool: Pool,
    config: BackboneConfig,
    clusters: int,
    cache_dir: Path,
    *,
    batch_size: int = 128,
    workers: int | None = 0,
    device: str = "cpu",
    progress: bool | None = None,
) -> tuple[PatternBank, dict[str, float]]:
    """The pool's bank for ``config`` at ``clusters``, extracted once into ``cache_dir``.

    Returns:
        the bank and ``{"seconds", "cpu_seconds"}``: the wall and CPU time its
        extraction took, recorded when it was made (a reused bank reports its first cost).
        The CPU time counts this process only (extraction ``workers`` > 0 add theirs).
    """
    from geal.bank import FORMAT_VERSION
    from geal.extract import extract

    options = config.options() | {"clusters": clusters}
    options.pop("name")
    # a new bank format gets its own folder: a cached bank of an older one is not reused
    root = cache_dir / f"{config.model}-{_key(pool, options | {'bank': FORMAT_VERSION})}"
    timing_file = root / "extract.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    c0 = time.process_time()
    bank, summary = extract(
        pool,
        root / "bank",
        model=config.model,
        weights=config.weights,
        image_size=config.image_size,
        stage=config.stage,
        clusters=clusters,
        precision=config.precision,
        batch_size=batch_size,
        workers=workers,
        device=device,
        progress=progress,
    )
    cpu = time.process_time() - c0
    if summary.extracted:
        timing = {
            "seconds": float(timing.get("seconds", 0.0)) + summary.seconds,
            "cpu_seconds": float(timing.get("cpu_seconds", 0.0)) + cpu,
            "images": summary.images,
            "options": options,
            "pool": pool.describe(),
            "torch_threads": torch.get_num_threads(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        root.mkdir(parents=True, exist_ok=True)
        timing_file.write_text(json.dumps(timing, indent=1))
        log.info("extracted %s K=%d: %s", config.name, clusters, summary.line())
    else:
        log.info("reused %s K=%d bank %s", config.name, clusters, root / "bank")
    unknown = float("nan")  # a bank made elsewhere, without a record of its cost
    return bank, {
        "seconds": float(timing.get("seconds", unknown)),
        "cpu_seconds": float(timing.get("cpu_seconds", unknown)),
    }


def build_task(
    pool: Pool,
    test: Pool,
    backbones: Sequence[BackboneConfig],
    *,
    pool_size: int | None = None,
    cache_dir: str | Path | None = None,
    images: bool = True,
    grey: bool | None = None,
    batch_size: int = 128,
    workers: int | None = 0,
    device: str = "cpu",
    progress: bool | None = None,
    name: str | None = None,
    cnn_recipe: CNNRecipe = CNN_RECIPE,
) -> Task:
    """Labels, raw images and cached banks of a labelled pool and its test set.

    Args:
        pool: the labelled pool to select from.
        test: the labelled test images.
        backbones: one bank per backbone and cluster count is extracted (or reused).
        pool_size: keep only the first ``pool_size`` pool images (None: all).
        cache_dir: where banks live (default: ``<geal cache>/eval``).
        images: load the raw images (needed by the cnn protocol).
        grey: load images as one grey channel (default: for IDX pools).
        batch_size, workers, device, progress: extraction settings (never change a bank).
        name: task label (default: the pool's root folder name).
        cnn_recipe: protocol (a)'s recipe (the default is the published one).
    """
    from geal.internal.cache import cache_root

    pool = head(pool, pool_size)
    cache = Path(cache_dir) if cache_dir is not None else cache_root() / "eval"
    grey = pool.format == "idx" if grey is None else grey
    bbs: dict[str, BackboneBanks] = {}
    kw: dict[str, Any] = {
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "progress": progress,
    }
    for cfg in backbones:
        if cfg.name in bbs:
            raise GealError(f"backbone label {cfg.name!r} given twice")
        banks: dict[int, PatternBank] = {}
        seconds: dict[int, dict[str, float]] = {}
        for k in cfg.clusters:
            banks[k], seconds[k] = cached_bank(pool, cfg, k, cache, **kw)
        test_bank, _ = cached_bank(test, cfg, min(cfg.clusters), cache, **kw)
        bbs[cfg.name] = BackboneBanks(
            cfg.name,
            banks,
            test_bank.global_features(np.float32),
            seconds,
            cfg.options() | {"dim": banks[min(banks)].dim},
        )
    t = time.perf_counter()
    pool_images = load_images(pool, grey=grey) if images else None
    test_images = load_images(test, grey=grey) if images else None
    if images:
        log.info("loaded %d + %d images in %.1f s", len(pool), len(test), time.perf_counter() - t)
    return Task(
        labels_of(pool),
        labels_of(test),
        pool_images,
        test_images,
        bbs,
        classes=len(pool.classes) if pool.classes else 0,
        name=name or Path(pool.root).name,
        meta={
            "pool": pool.describe(),
            "test": test.describe(),
            "cache_dir": str(cache),
        },
        cnn_recipe=cnn_recipe,
    )
