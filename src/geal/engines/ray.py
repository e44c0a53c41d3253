"""Extraction on Ray Data: decoding tasks feed an actor pool of the backbone.

The driver keeps the bank: it writes the same shards and manifest as the local engine,
and since every image's patterns depend only on that image (see ``geal.patterns``), the
bank is the same as the local engine's for the same pool, options and device type.

Parquet datasets (``--format hf`` on Parquet files) and WebDataset shards (``--format
wds``) are read by Ray itself, ``ray.data.read_parquet`` and ``ray.data.read_webdataset``,
so that workers read the files where they lie instead of going through the driver's pool
object; a Parquet pool lists only its split's files, so other splits are not read. A row
read that way is matched to its pool images by content key (the sha256 of its stored
bytes, which the pool uses too): rows of images already in the bank (a resumed run) or
grouped otherwise than the pool groups them are dropped by the workers after hashing,
and any pool image such a read did not deliver is then read through the pool, so the
bank is the same either way. ``GEAL_RAY_DIRECT=0`` turns the
direct read off.

``ray.init()`` starts a local Ray by default; set ``RAY_ADDRESS`` to use a cluster (its
workers must reach the pool's files and the weights file at the same paths). Install
with ``pip install 'geal[ray]'``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geal.engines import ExtractJob
from geal.engines.encode import encode_batch
from geal.errors import GealError
from geal.internal.content import KEY_BYTES, seed_of
from geal.internal.images import decode_bytes
from geal.internal.progress import Progress
from geal.pools.base import Pool

if TYPE_CHECKING:
    from geal.backbones import Backbone

log = logging.getLogger(__name__)


class _Decode:
    """Ray actor: pool indices -> preprocessed images (or the reason they failed) and the
    images' k-means seed keys."""

    def __init__(self, pool: Pool, preprocess: Any, seeds: np.ndarray):
        torch.set_num_threads(1)
        self.pool = pool
        self.preprocess = preprocess
        self.seeds = seeds

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["index"]
        size = self.preprocess.image_size
        images = np.zeros((len(index), 3, size, size), np.float32)
        error = np.empty(len(index), dtype=object)
        for row, i in enumerate(index.tolist()):
            try:
                images[row] = self.preprocess(self.pool.load(int(i), size)).numpy()
                error[row] = ""
            except Exception as e:  # reported per image, never fatal
                error[row] = f"{type(e).__name__}: {e}"
        return {"index": index, "seed": self.seeds[index], "image": images, "error": error}


class _Encode:
    """Ray actor holding one backbone: images -> knowledge clusters, padded to K."""

    def __init__(self, request: dict[str, Any], options: dict[str, Any], device: str, threads: int):
        from geal.backbones import create_backbone

        if threads > 0:
            torch.set_num_threads(threads)
        self.backbone = create_backbone(**request, device=device)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(batch["error"])
        ok = np.array([e == "" for e in batch["error"]], dtype=bool)
        k, dim = self.options["clusters"], self.backbone.dim
        centers = np.zeros((rows, k, dim), np.float32)
        counts = np.zeros(rows, np.int32)
        kept = np.zeros(rows, np.int32)
        glob = np.zeros((rows, dim), np.float32)
        if ok.any():
            images = torch.from_numpy(np.ascontiguousarray(batch["image"][ok]))
            seeds = [int(s) for s in batch["seed"][ok]]
            c, n, g, t = encode_batch(self.backbone, images, seeds, self.options)
            centers[ok], counts[ok], glob[ok], kept[ok] = c, n, g, t
        out = {
            "centers": centers,
            "counts": counts,
            "global": glob,
            "kept": kept,
            "error": batch["error"],
        }
        out.update({name: batch[name] for name in ("index", "key") if name in batch})
        return out


@dataclass(frozen=True)
class DirectSource:
    """Files of a pool that Ray Data reads itself.

    Attributes:
        kind: ``parquet`` or ``webdataset``.
        paths: the files, in the pool's order.
        column: the Parquet image column (a struct of ``bytes`` and ``path``).
    """

    kind: str
    paths: list[str]
    column: str | None = None


def direct_source(pool: Pool) -> DirectSource | None:
    """The files Ray can read for ``pool`` itself, or None (read through the pool object)."""
    if os.environ.get("GEAL_RAY_DIRECT", "1") == "0":
        return None
    from geal.pools.hf import HfPool
    from geal.pools.wds import WdsPool

    if isinstance(pool, WdsPool) and pool.shards:
        return DirectSource("webdataset", [str(p) for p in pool.shards])
    if isinstance(pool, HfPool):
        files = [str(f) for f in pool.meta.get("files") or []]
        # rows that point at loose files (an imagefolder) are read through the pool
        if (
            files
            and all(f.endswith(".parquet") for f in files)
            and all(item.path is None for item in pool.items)
        ):
            # Ray lists Parquet files on threads that import fsspec's HTTP filesystem,
            # which races (and fails) when aiohttp is missing
            if importlib.util.find_spec("aiohttp") is None:
                log.info("ray: Parquet read through the pool (Ray's reader needs aiohttp)")
                return None
            return DirectSource("parquet", files, pool.image_column)
    return None


def _stored_bytes(batch: Any, source: DirectSource) -> list[bytes | None]:
    """The stored image bytes of each row of a ``pyarrow.Table`` batch (None: no image)."""
    if source.kind == "parquet":
        column = batch.column(source.column).combine_chunks()
        return list(column.field("bytes").to_pylist())
    from geal.pools.wds import IMAGE_KEYS  # the image entries, in the order the pool takes them

    by_ext = {name.lower(): name for name in batch.column_names}
    columns = [batch.column(by_ext[e]).to_pylist() for e in IMAGE_KEYS if e in by_ext]
    # a sample without an entry reads as None, or as NaN where Ray merged blocks whose
    # samples had other entries
    return [
        next((bytes(c[row]) for c in columns if isinstance(c[row], bytes | bytearray)), None)
        for row in range(batch.num_rows)
    ]


class _DecodeBytes:
    """Ray actor: rows of a pool's own files -> preprocessed images of the wanted ones.

    A row is wanted when the sha256 of its stored bytes is the content key of an image
    still to extract; the others are dropped here, after hashing, before decoding.
    """

    def __init__(self, source: DirectSource, preprocess: Any, wanted: frozenset[bytes]):
        torch.set_num_threads(1)
        self.source = source
        self.preprocess = preprocess
        self.wanted = wanted

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        rows = []
        for data in _stored_bytes(batch, self.source):
            if data is not None and (key := hashlib.sha256(data).digest()) in self.wanted:
                rows.append((key, data))
        size = self.preprocess.image_size
        images = np.zeros((len(rows), 3, size, size), np.float32)
        keys = np.zeros((len(rows), KEY_BYTES), np.uint8)
        seeds = np.zeros(len(rows), np.uint64)
        error = np.empty(len(rows), dtype=object)
        for row, (key, data) in enumerate(rows):
            keys[row] = np.frombuffer(key, np.uint8)
            seeds[row] = seed_of(key)
            try:
                images[row] = self.preprocess(decode_bytes(data, size)).numpy()
                error[row] = ""
            except Exception as e:  # reported per image, never fatal
                error[row] = f"{type(e).__name__}: {e}"
        return {"key": keys, "seed": seeds, "image": images, "error": error}


def backbone_request(backbone: Backbone) -> dict[str, Any]:
    """Arguments of :func:`geal.backbones.create_backbone` that rebuild ``backbone`` elsewhere.

    Taken from the built backbone itself (name, input size, CNN stage, weights), so the
    model actors hold the model the bank's manifest describes, whether the caller named
    a model or passed one in. Hub weights are fetched again by name (``weights=None``).
    """
    weights = backbone.weights_id
    return {
        "name": backbone.name,
        "weights": None if str(weights).startswith("hub:") else weights,
        "image_size": backbone.preprocess.image_size,
        "stage": getattr(backbone, "stage", None),
    }


@dataclass(frozen=True)
class _Plan:
    """How one extraction is spread over the Ray cluster."""

    model_actors: int
    decode_actors: int
    threads: int
    use_gpu: bool
    decode_cpus: float = 1.0


def _plan(ray: Any, device: str, *, reads: bool = False) -> _Plan:
    """Actors per stage. With ``reads`` (Ray reads the pool's files itself), one CPU is
    left to the read tasks: the actors hold theirs for the whole run, and on a small
    machine a read task waiting for a CPU would never start."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    use_gpu = gpus > 0 and device != "cpu"
    model_actors = int(os.environ.get("GEAL_RAY_MODEL_ACTORS", 0)) or (
        gpus if use_gpu else max(1, cpus // 4)
    )
    decode_actors = max(1, cpus - (0 if use_gpu else model_actors))
    threads = 0 if use_gpu else max(1, cpus // model_actors - 1) if cpus > model_actors else 1
    decode_cpus = 1.0
    if reads:
        held = 0 if use_gpu else model_actors * threads
        decode_actors = max(1, min(decode_actors, cpus - held - 1))
        decode_cpus = 1.0 if held + decode_actors + 1 <= cpus else 0.0
    return _Plan(model_actors, decode_actors, threads, use_gpu, decode_cpus)


def _encoded(ds: Any, decode: type, decode_args: tuple[Any, ...], job: ExtractJob, plan: _Plan,
             decode_format: str) -> Any:  # fmt: skip
    """``ds`` decoded by ``decode`` actors, then encoded by the model actors."""
    request = backbone_request(job.backbone)
    ds = ds.map_batches(
        decode, fn_constructor_args=decode_args, batch_size=job.batch_size,
        concurrency=plan.decode_actors, num_cpus=plan.decode_cpus, batch_format=decode_format,
    )  # fmt: skip
    return ds.map_batches(
        _Encode,
        fn_constructor_args=(request, dict(job.options), "cuda" if plan.use_gpu else "cpu", plan.threads),
        batch_size=job.batch_size, concurrency=plan.model_actors, batch_format="numpy",
        num_gpus=1 if plan.use_gpu else 0, num_cpus=1 if plan.use_gpu else max(1, plan.threads),
    )  # fmt: skip


def _deliver(shards: Any, pool: Pool, i: int, batch: dict[str, np.ndarray], row: int) -> None:
    """Hand row ``row`` of an encoded batch to the shards as pool image ``i``."""
    if err := batch["error"][row]:
        shards.failed(pool, i, str(err))
    else:
        n = int(batch["counts"][row])
        shards.add(i, batch["centers"][row, :n], batch["global"][row], int(batch["kept"][row]))


def _direct(ray: Any, job: ExtractJob, source: DirectSource, indices: list[int], plan: _Plan,
            shards: Any, bar: Progress) -> list[int]:  # fmt: skip
    """Extract ``indices`` from the pool's files read by Ray; returns the ones not found."""
    import pyarrow.fs

    assert job.keys is not None
    by_key: dict[bytes, list[int]] = {}
    for i in indices:
        by_key.setdefault(job.keys[i].tobytes(), []).append(i)
    # the pool's files are local paths: name the filesystem rather than let Ray guess
    # one through fsspec
    local = pyarrow.fs.LocalFileSystem()
    if source.kind == "parquet":
        ds = ray.data.read_parquet(source.paths, filesystem=local).select_columns([source.column])
    else:
        ds = ray.data.read_webdataset(source.paths, decoder=None, filesystem=local)
    wanted = frozenset(by_key)
    ds = _encoded(ds, _DecodeBytes, (source, job.backbone.preprocess, wanted), job, plan, "pyarrow")
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for row in range(len(batch["key"])):
            targets = by_key.pop(batch["key"][row].tobytes(), None)
            for i in targets or ():  # None: an image seen twice in the files
                _deliver(shards, job.pool, i, batch, row)
            bar.update(len(targets or ()))
    left = sorted(i for found in by_key.values() for i in found)
    log.info(
        "ray: %d images read from %d %s files by Ray, %d through the pool",
        len(indices) - len(left), len(source.paths),
        "Parquet" if source.kind == "parquet" else "WebDataset", len(left),
    )  # fmt: skip
    return left


def _through_pool(ray: Any, job: ExtractJob, indices: list[int], plan: _Plan, shards: Any,
                  bar: Progress) -> None:  # fmt: skip
    """Extract ``indices`` with decoding actors that load them from the pool object."""
    seeds = (
        job.seeds.astype(np.uint64)
        if job.seeds is not None
        else np.arange(len(job.pool), dtype=np.uint64)
    )
    ds = (
        ray.data.from_items([{"index": int(i)} for i in indices])
        if len(indices) < 1000
        else (ray.data.from_numpy(np.asarray(indices, np.int64)).rename_columns({"data": "index"}))
    )
    ds = _encoded(ds, _Decode, (job.pool, job.backbone.preprocess, seeds), job, plan, "numpy")
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for row, i in enumerate(batch["index"].tolist()):
            _deliver(shards, job.pool, int(i), batch, row)
        bar.update(len(batch["index"]))


def run(job: ExtractJob) -> None:
    """Extract the images ``job.todo`` on Ray Data and write the missing shards."""
    try:
        import ray
    except ImportError:
        raise GealError("--engine ray needs Ray: pip install 'geal[ray]'") from None
    if not ray.is_initialized():
        ray.init(
            ignore_reinit_error=True, include_dashboard=False, log_to_driver=False
        )  # honours RAY_ADDRESS
    source = direct_source(job.pool) if job.keys is not None else None
    plan = _plan(ray, job.device, reads=source is not None)
    log.info(
        "ray: %d model actors (%s), %d decoding actors",
        plan.model_actors, "GPU" if plan.use_gpu else "CPU", plan.decode_actors,
    )  # fmt: skip
    indices = job.todo
    shards = job.assembler()
    with Progress(len(indices), unit="img", desc="extract", progress=job.progress) as bar:
        if source is not None:
            indices = _direct(ray, job, source, indices, plan, shards, bar)
        if indices:
            _through_pool(ray, job, indices, plan, shards, bar)
