"""What the commands share: option groups, a few constants for help texts, printing helpers.

Nothing here imports torch or the samplers, so ``geal --help`` and ``geal --version``
answer at once: the defaults the help texts show come from :mod:`geal.defaults`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from geal.defaults import DEFAULT_CHUNK, DEFAULT_STRATEGY, PRUNE_MIN_PATTERNS, STRATEGIES

SPLIT_FORMATS = "voc, coco, indices, ultralytics, mmdet, labelstudio, labelstudio-files, cvat"


def common_args(p: argparse.ArgumentParser) -> None:
    """Options every working command takes (also accepted after the command name)."""
    # SUPPRESS keeps the top-level value unless the option is given after the command
    p.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")


def pool_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pool")
    g.add_argument(
        "pool",
        help="folder, list file, VOCdevkit, COCO json, CIFAR-10 or IDX dir, Hugging Face "
        "dataset (save_to_disk or Parquet), WebDataset tar shards, or a FiftyOne dataset name",
    )
    g.add_argument(
        "--format",
        default="auto",
        help="pool reader: auto (detect), folder, list, voc, coco, cifar10, idx, hf, wds, builtin, "
        "fiftyone (POOL is a dataset name) (default: auto)",
    )
    g.add_argument(
        "--split",
        default=None,
        help="subset to read: VOC image set (default trainval), train/test for CIFAR/IDX, "
        "COCO json name when a folder holds several",
    )


def extract_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("extraction (one forward pass per image)")
    g.add_argument(
        "--model",
        default="dino_vits16",
        help="backbone: dino_vits16 (default), dino_vits8, "
        "dino_vitb16, dinov2_vits14, efficientnet_lite0, focus_vits14, or any timm model name",
    )
    g.add_argument(
        "--weights",
        default=None,
        help="weights file (DINO .pth, timm .pth/.safetensors), "
        "or 'random' for an untrained model; default: the model's published weights",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="square input size in pixels (default: the model's, smaller for small images)",
    )
    g.add_argument(
        "--stage", type=int, default=None, help="CNN feature stage giving the dense tokens"
    )
    g.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="attention mass kept per image, tau (default 0.5)",
    )
    g.add_argument(
        "--clusters", type=int, default=5, help="knowledge clusters per image, K (default 5)"
    )
    g.add_argument(
        "--batch-size", type=int, default=32, help="images per forward pass (default 32)"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help=(
            "image decoding processes (default: CPUs - 1, max 8; none for a CPU model on 2 CPUs,"
            " which then encodes batches side by side, one thread each)"
        ),
    )
    g.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="autocast precision (default auto: bf16 where the device is fast at it)",
    )
    g.add_argument(
        "--dtype", default="float16", choices=["float16", "float32"], help="bank storage dtype"
    )
    g.add_argument(
        "--shard-size", type=int, default=1024, help="images per bank shard, the unit of resuming"
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a bank made with other settings or from another pool (the old one "
        "stays until the new one is complete)",
    )
    g.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local (DataLoader workers) or ray (Ray Data actor pool; a cluster via RAY_ADDRESS)",
    )


def select_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection")
    g.add_argument("--budget", type=int, default=None, help="images to select")
    g.add_argument(
        "--budgets", default=None, help="several budgets from one ranking, e.g. 1000,2000,3000"
    )
    g.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY,
        help=f"sampler: {', '.join(STRATEGIES)} (default {DEFAULT_STRATEGY})",
    )
    g.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hyperparameter of the strategy, e.g. --option pick=objects (repeatable; "
        "docs/samplers.md lists them)",
    )
    g.add_argument(
        "--labeled", default=None, help="file of already-labeled image ids (never re-picked)"
    )
    g.add_argument(
        "--distance", default="cosine", choices=["cosine", "euclidean"], help="pattern distance"
    )
    g.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK,
        help=f"rows per distance block, bounds memory (default {DEFAULT_CHUNK})",
    )
    g.add_argument(
        "--prune",
        default="auto",
        choices=["auto", "on", "off"],
        help=f"exact pruned distance updates (auto: CPU, cosine, from {PRUNE_MIN_PATTERNS:,} "
        "patterns; same ranking)",
    )
    g.add_argument(
        "--to",
        default="",
        help=f"split files to write: {SPLIT_FORMATS} (comma list)",
    )
    g.add_argument("--name", default="geal", help="name used in split file names (default geal)")


def report_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report",
        action="store_true",
        help="also write OUT/report.html, a page showing the picks (see `geal report`)",
    )


def to_list(to: str) -> list[str]:
    """``"voc, coco"`` -> ``["voc", "coco"]``."""
    return [t.strip() for t in to.split(",") if t.strip()]


def progress_flag(a: argparse.Namespace) -> bool | None:
    """``False`` (no bars) with ``-q``, else ``None`` (bars on a terminal)."""
    return False if a.quiet else None


def extract_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`geal.extract.extract` given on the command line."""
    return {
        "model": a.model,
        "weights": a.weights,
        "image_size": a.image_size,
        "stage": a.stage,
        "threshold": a.threshold,
        "clusters": a.clusters,
        "seed": a.seed,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "device": a.device,
        "precision": a.precision,
        "dtype": a.dtype,
        "shard_size": a.shard_size,
        "overwrite": a.overwrite,
        "engine": a.engine,
        "progress": progress_flag(a),
    }


def check_select_args(a: argparse.Namespace) -> None:
    """The selection options that can be checked before any work (strategy, device,
    chunk, pruning): each a one-line error now rather than after the forward pass."""
    from geal.sampling import SAMPLERS, RunSettings

    SAMPLERS.get(a.strategy).parse_options(a.option)
    RunSettings(device=a.device, chunk=a.chunk, prune=a.prune)


def select_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`geal.pipeline.run_selection` the options give."""
    from geal.sampling import SAMPLERS

    return {
        "strategy": a.strategy,
        "params": SAMPLERS.get(a.strategy).parse_options(a.option),
        "seed": a.seed,
        "distance": a.distance,
        "to": to_list(a.to),
        "name": a.name,
        "device": a.device,
        "chunk": a.chunk,
        "prune": a.prune,
        "progress": progress_flag(a),
    }


def json_flag(p: argparse.ArgumentParser) -> None:
    """``--json``: one JSON object on stdout (files, counts, timings); the usual lines go to
    stderr, so a script reads stdout whole."""
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (files written, counts, timings) on stdout instead of "
        "the usual lines, which go to stderr",
    )


def extract_result(summary: Any) -> dict[str, Any]:
    """What an extraction did, for ``--json``."""
    return {
        "bank": str(summary.bank),
        "images": summary.images,
        "patterns": summary.patterns,
        "failed": summary.failed,
        "failed_images": [str(f.get("path") or f.get("id")) for f in summary.failed_items],
        "extracted": summary.extracted,
        "reused": getattr(summary, "reused", 0),
        "removed": getattr(summary, "removed", 0),
        "seconds": round(summary.seconds, 3),
        "images_per_second": round(summary.images_per_second, 2),
    }


def selection_result(a: argparse.Namespace, res: Any, n: int) -> dict[str, Any]:
    """What a selection wrote, for ``--json``."""
    return {
        "out": str(Path(a.out).resolve()),
        "strategy": a.strategy,
        "budgets": sorted(res.rankings) if res.rankings else [],
        "pool_images": n,
        "files": [str(f) for f in res.files],
        "removed": list(res.removed),
        "select_seconds": round(res.seconds, 3),
    }


def print_failed(summary: Any) -> None:
    """Name the images an extraction could not read (on stderr)."""
    if summary.failed:
        shown = ", ".join(str(f.get("path") or f.get("id")) for f in summary.failed_items[:5])
        more = f" and {summary.failed - 5} more" if summary.failed > 5 else ""
        print(
            f"skipped {summary.failed} unreadable images: {shown}{more} "
            f"(listed in {summary.bank / 'failed.json'})",
            file=sys.stderr,
        )


def print_replaced(out: Any, removed: list[str]) -> None:
    """Say which files of an earlier selection at ``out`` are gone with it."""
    if removed:
        shown = ", ".join(removed[:10]) + (
            f" and {len(removed) - 10} more" if len(removed) > 10 else ""
        )
        print(f"replaced the earlier selection in {out}; removed {shown}")


def write_report(a: argparse.Namespace, pool: Any, bank: Any) -> None:
    """``--report``: write OUT/report.html for the selection just made."""
    from geal.report import write_report as write

    path = write(a.out, pool=pool, bank=bank, progress=progress_flag(a))
    print(f"wrote {path}")
