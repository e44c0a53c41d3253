"""Extraction on Ray Data: decoding tasks feed an actor pool of the backbone.

The driver keeps the bank: it writes the same shards and manifest as the local engine,
and since every image's patterns depend only on that image (see ``geal.patterns``), the
bank is the same as the local engine's for the same pool, options and device type.

``ray.init()`` starts a local Ray by default; set ``RAY_ADDRESS`` to use a cluster (its
workers must reach the pool's files and the weights file at the same paths). Install
with ``pip install 'geal[ray]'``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geal.engines import ExtractJob
from geal.engines.encode import encode_batch
from geal.errors import GealError
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
                images[row] = self.preprocess(self.pool.load(int(i))).numpy()
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
        index = batch["index"]
        ok = np.array([e == "" for e in batch["error"]], dtype=bool)
        k, dim = self.options["clusters"], self.backbone.dim
        centers = np.zeros((len(index), k, dim), np.float32)
        counts = np.zeros(len(index), np.int32)
        glob = np.zeros((len(index), dim), np.float32)
        if ok.any():
            images = torch.from_numpy(np.ascontiguousarray(batch["image"][ok]))
            seeds = [int(s) for s in batch["seed"][ok]]
            c, n, g = encode_batch(self.backbone, images, seeds, self.options)
            centers[ok], counts[ok], glob[ok] = c, n, g
        return {
            "index": index,
            "centers": centers,
            "counts": counts,
            "global": glob,
            "error": batch["error"],
        }


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
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    use_gpu = gpus > 0 and job.device != "cpu"
    model_actors = int(os.environ.get("GEAL_RAY_MODEL_ACTORS", 0)) or (
        gpus if use_gpu else max(1, cpus // 4)
    )
    decode_actors = max(1, cpus - (0 if use_gpu else model_actors))
    threads = 0 if use_gpu else max(1, cpus // model_actors - 1) if cpus > model_actors else 1
    log.info(
        "ray: %d model actors (%s), %d decoding actors",
        model_actors,
        "GPU" if use_gpu else "CPU",
        decode_actors,
    )
    backbone, options = job.backbone, dict(job.options)
    request = backbone_request(backbone)
    indices = np.asarray(job.todo, dtype=np.int64)
    seeds = (
        job.seeds.astype(np.uint64)
        if job.seeds is not None
        else np.arange(len(job.pool), dtype=np.uint64)
    )
    ds = (
        ray.data.from_items([{"index": int(i)} for i in indices])
        if len(indices) < 1000
        else (ray.data.from_numpy(indices).rename_columns({"data": "index"}))
    )
    ds = ds.map_batches(
        _Decode, fn_constructor_args=(job.pool, backbone.preprocess, seeds),
        batch_size=job.batch_size,
        concurrency=decode_actors, num_cpus=1, batch_format="numpy",
    )  # fmt: skip
    ds = ds.map_batches(
        _Encode, fn_constructor_args=(request, options, "cuda" if use_gpu else "cpu", threads),
        batch_size=job.batch_size, concurrency=model_actors, batch_format="numpy",
        num_gpus=1 if use_gpu else 0, num_cpus=1 if use_gpu else max(1, threads),
    )  # fmt: skip
    shards = job.assembler()
    with Progress(len(indices), unit="img", desc="extract", progress=job.progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for row, i in enumerate(batch["index"].tolist()):
                err = batch["error"][row]
                if err:
                    shards.failed(job.pool, int(i), str(err))
                else:
                    n = int(batch["counts"][row])
                    shards.add(int(i), batch["centers"][row, :n], batch["global"][row])
            bar.update(len(batch["index"]))
