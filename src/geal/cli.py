"""Command line: argument parsing and printing only; the work lives in the modules."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geal._version import __version__
from geal.errors import GealError

log = logging.getLogger("geal")

EPILOG = """examples:
  geal run ./images --budget 100 --to ultralytics --out sel/      # a folder of images
  geal run VOCdevkit --budgets 1000,2000 --to voc --out sel/      # PASCAL VOC07+12
  geal run annotations/instances_train2017.json --budget 5000 --to coco --out sel/
  geal run ./images --budget 100 --out sel/ --report              # ... and sel/report.html
  geal report sel/ --screenshot report.png                        # report + its picture
  geal export sel/ --to mmdet                                     # + mmdetection SSD300 config
  geal demo                                                       # offline demo + report
"""


def _pool_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pool")
    g.add_argument("pool", help="folder, list file, VOCdevkit, COCO json, CIFAR-10 or IDX dir")
    g.add_argument(
        "--format",
        default="auto",
        help="pool reader: auto (detect), folder, list, voc, coco, cifar10, idx (default: auto)",
    )
    g.add_argument(
        "--split",
        default=None,
        help="subset to read: VOC image set (default trainval), train/test for CIFAR/IDX, "
        "COCO json name when a folder holds several",
    )


def _extract_args(p: argparse.ArgumentParser) -> None:
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
        help="square input size in pixels (default: the model's)",
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
        help="image decoding processes (default: CPUs - 1, max 8)",
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
        "--overwrite", action="store_true", help="replace a bank made with other settings"
    )
    g.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local (DataLoader workers) or ray (Ray Data actor pool; a cluster via RAY_ADDRESS)",
    )


def _select_args(p: argparse.ArgumentParser, *, require_budget: bool = True) -> None:
    from geal.sampling import DEFAULT_STRATEGY, SAMPLERS
    from geal.sampling.geal import PRUNE_MIN_PATTERNS

    g = p.add_argument_group("selection")
    g.add_argument("--budget", type=int, default=None, help="images to select")
    g.add_argument(
        "--budgets", default=None, help="several budgets from one ranking, e.g. 1000,2000,3000"
    )
    g.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY,
        help=f"sampler: {', '.join(sorted(SAMPLERS))} (default {DEFAULT_STRATEGY})",
    )
    g.add_argument(
        "--labeled", default=None, help="file of already-labeled image ids (never re-picked)"
    )
    g.add_argument(
        "--distance", default="cosine", choices=["cosine", "euclidean"], help="pattern distance"
    )
    g.add_argument(
        "--chunk", type=int, default=65536, help="rows per distance block (bounds memory)"
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
        help="split files to write: voc, coco, indices, ultralytics, mmdet (comma list)",
    )
    g.add_argument("--name", default="geal", help="name used in split file names (default geal)")


def _report_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report",
        action="store_true",
        help="also write OUT/report.html, a page showing the picks (see `geal report`)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geal",
        description="Pick the images of an unlabeled pool worth annotating, with one forward "
        "pass of a frozen pre-trained model and no training (GEAL).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"geal {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        # also accepted after the command; SUPPRESS keeps the top-level value otherwise
        p.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
        )
        p.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
        )
        p.add_argument(
            "--seed", type=int, default=0, help="seed of every random choice (default 0)"
        )
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")

    p = sub.add_parser(
        "extract",
        help="extract a pool's knowledge clusters into a pattern bank",
        description="One forward pass per image -> knowledge clusters -> bank on disk. "
        "Resumes an interrupted bank at the same --out.",
    )
    _pool_args(p)
    _extract_args(p)
    common(p)
    p.add_argument(
        "--out",
        default=None,
        help="bank directory (default: a cache dir keyed by pool and options)",
    )

    p = sub.add_parser(
        "select",
        help="rank a bank's images and write the selection",
        description="Rank the pool from a pattern bank; write ranking.csv, "
        "selection.json and the split files asked with --to.",
    )
    p.add_argument("bank", help="pattern bank directory made by `geal extract`")
    _select_args(p)
    common(p)
    p.add_argument("--pool", default=None, help="the pool, if it moved since extraction")
    p.add_argument("--out", required=True, help="output directory")
    _report_flag(p)

    p = sub.add_parser(
        "export",
        help="write split files for a selection made earlier",
        description="Write split files from a selection directory (ranking.csv + selection.json).",
    )
    p.add_argument("dir", help="selection directory written by `geal select` or `geal run`")
    p.add_argument(
        "--to", required=True, help="voc, coco, indices, ultralytics, mmdet (comma list)"
    )
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="budget to export (default: the selection's budgets)",
    )
    p.add_argument("--pool", default=None, help="the pool, if it moved")
    p.add_argument("--format", default="auto", help="pool format when --pool is given")
    p.add_argument("--name", default="geal", help="name used in split file names")
    p.add_argument("--out", default=None, help="where to write (default: the selection directory)")
    p.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
    )

    p = sub.add_parser(
        "run",
        help="extract (cached), select and export in one command",
        description="Extract (reusing a matching cached bank), select and export.",
    )
    _pool_args(p)
    _extract_args(p)
    _select_args(p)
    common(p)
    p.add_argument(
        "--bank", default=None, help="bank directory (default: cache dir keyed by pool and options)"
    )
    p.add_argument("--out", required=True, help="output directory")
    _report_flag(p)

    p = sub.add_parser(
        "report",
        help="write an HTML page showing a selection",
        description="Write DIR/report.html: the picks with their coverage radius, a random "
        "pick of the same size, class counts, a map of the pool, the coverage curve and the "
        "settings. One self-contained file (images embedded); opens offline in any browser.",
    )
    p.add_argument("dir", help="selection directory written by `geal select` or `geal run`")
    p.add_argument("--pool", default=None, help="the pool, if it moved")
    p.add_argument("--format", default="auto", help="pool format when --pool is given")
    p.add_argument(
        "--bank", default=None, help="the pattern bank (default: the one selection.json records)"
    )
    p.add_argument("--budget", type=int, default=None, help="budget to show (default: the largest)")
    p.add_argument(
        "--max-thumbs",
        type=int,
        default=200,
        help="thumbnails at most for the picks and for the random pick (default 200)",
    )
    p.add_argument(
        "--max-points",
        type=int,
        default=20000,
        help="pool images drawn on the map at most (default 20000)",
    )
    p.add_argument(
        "--projection",
        default="auto",
        choices=["auto", "pca", "umap"],
        help="map projection (default auto: UMAP if umap-learn is installed, else PCA)",
    )
    p.add_argument("--out", default=None, help="HTML file (default DIR/report.html)")
    p.add_argument(
        "--screenshot",
        default=None,
        metavar="PNG",
        help="then open the page in headless Chromium, check every thumbnail renders, and "
        "save what it shows as PNG (e.g. docs/report.png)",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )

    p = sub.add_parser(
        "demo",
        help="the main job on an embedded real pool, with a report",
        description="Run extract -> select -> export on a real pool that installs "
        "with geal[demo], and write a report.",
    )
    p.add_argument("--budget", type=int, default=20, help="images to select (default 20)")
    p.add_argument(
        "--pool",
        default="builtin",
        help="builtin (default: 119 sample images shipped in foolbox and scikit-image) or "
        "fashion-mnist (apt-get install dataset-fashion-mnist)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use the pool's first N images (default: all of builtin, 1000 of fashion-mnist)",
    )
    p.add_argument("--strategy", default=None, help="sampler (default: the package default)")
    common(p)
    p.add_argument("--out", default="geal-demo", help="output directory (default ./geal-demo)")
    return parser


def _to_list(to: str) -> list[str]:
    return [t.strip() for t in to.split(",") if t.strip()]


def _extract_kwargs(a: argparse.Namespace) -> dict[str, Any]:
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
        "progress": False if a.quiet else None,
    }


def _print_failed(summary: Any) -> None:
    if summary.failed:
        shown = ", ".join(str(f.get("path") or f.get("id")) for f in summary.failed_items[:5])
        more = f" and {summary.failed - 5} more" if summary.failed > 5 else ""
        print(
            f"skipped {summary.failed} unreadable images: {shown}{more} "
            f"(listed in {summary.bank / 'failed.json'})",
            file=sys.stderr,
        )


def cmd_extract(a: argparse.Namespace) -> int:
    from geal.extract import extract
    from geal.pools import open_pool

    pool = open_pool(a.pool, a.format, split=a.split)
    _, summary = extract(pool, a.out, **_extract_kwargs(a))
    _print_failed(summary)
    print(summary.line())
    return 0


def cmd_select(a: argparse.Namespace) -> int:
    from geal.bank import PatternBank
    from geal.pipeline import parse_budgets, pool_of_bank, read_labeled, run_selection

    budgets = parse_budgets(a.budget, a.budgets)
    bank = PatternBank.open(a.bank)
    pool = pool_of_bank(bank, a.pool)
    labeled = read_labeled(a.labeled, pool) if a.labeled else None
    res = run_selection(
        bank,
        pool,
        a.out,
        budgets,
        strategy=a.strategy,
        seed=a.seed,
        labeled=labeled,
        distance=a.distance,
        to=_to_list(a.to),
        name=a.name,
        device=a.device,
        chunk=a.chunk,
        prune=a.prune,
        progress=False if a.quiet else None,
        extra={"bank": str(Path(a.bank).resolve())},
    )
    print(
        f"selected {max(budgets)} of {bank.n} images with {a.strategy} in {res.seconds:.1f} s -> {a.out}"
    )
    if a.report:
        _write_report(a, pool, bank)
    return 0


def _write_report(a: argparse.Namespace, pool: Any, bank: Any) -> None:
    from geal.report import write_report

    path = write_report(a.out, pool=pool, bank=bank, progress=False if a.quiet else None)
    print(f"wrote {path}")


def cmd_export(a: argparse.Namespace) -> int:
    from geal.bank import PatternBank
    from geal.errors import SelectionError
    from geal.export import EXPORTERS
    from geal.pipeline import pool_of_bank, read_selection
    from geal.pools import open_pool

    meta, ranking = read_selection(a.dir)
    if a.pool:
        pool = open_pool(a.pool, a.format)
    else:
        bank_path = meta.get("bank")
        if bank_path and Path(bank_path).exists():
            pool = pool_of_bank(PatternBank.open(bank_path))
        else:
            info = meta.get("pool", {})
            pool = open_pool(info.get("root"), info.get("format", "auto"))
    budgets = [a.budget] if a.budget else list(meta.get("budgets") or [len(ranking)])
    out = Path(a.out) if a.out else Path(a.dir)
    written = []
    for fmt in _to_list(a.to):
        if fmt not in EXPORTERS:
            raise SelectionError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}")
        for b in budgets:
            written += EXPORTERS[fmt](pool, ranking, b, out, name=a.name)
    for f in written:
        print(f)
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from geal.extract import extract
    from geal.pipeline import parse_budgets, read_labeled, run_selection
    from geal.pools import open_pool

    budgets = parse_budgets(a.budget, a.budgets)
    pool = open_pool(a.pool, a.format, split=a.split)
    if max(budgets) > len(pool):
        from geal.errors import SelectionError

        raise SelectionError(f"budget {max(budgets)} is larger than the pool ({len(pool)} images)")
    labeled = read_labeled(a.labeled, pool) if a.labeled else None
    bank, summary = extract(pool, a.bank, **_extract_kwargs(a))
    _print_failed(summary)
    print(f"extract: {summary.line()}")
    res = run_selection(
        bank,
        pool,
        a.out,
        budgets,
        strategy=a.strategy,
        seed=a.seed,
        labeled=labeled,
        distance=a.distance,
        to=_to_list(a.to),
        name=a.name,
        device=a.device,
        chunk=a.chunk,
        prune=a.prune,
        progress=False if a.quiet else None,
        extra={"bank": str(summary.bank), "extract_seconds": round(summary.seconds, 3)},
    )
    print(f"select: {max(budgets)} of {bank.n} images with {a.strategy} in {res.seconds:.1f} s")
    for f in res.files:
        print(f"wrote {f}")
    if a.report:
        _write_report(a, pool, bank)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from geal.bank import PatternBank
    from geal.pools import open_pool
    from geal.report import screenshot, write_report

    bank = PatternBank.open(a.bank) if a.bank else None
    pool = open_pool(a.pool, a.format) if a.pool else None
    path = write_report(
        a.dir,
        pool=pool,
        bank=bank,
        budget=a.budget,
        out=a.out,
        max_thumbs=a.max_thumbs,
        max_points=a.max_points,
        projection=a.projection,
        progress=False if a.quiet else None,
    )
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    if a.screenshot:
        print(f"wrote {screenshot(path, a.screenshot)}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from geal.demo import run_demo

    r = run_demo(
        a.out,
        pool=a.pool,
        budget=a.budget,
        strategy=a.strategy,
        seed=a.seed,
        device=a.device,
        limit=a.limit,
        progress=False if a.quiet else None,
    )
    total = sum(r.timings.values())
    steps = ", ".join(f"{k.split(' ')[0]} {v:.1f} s" for k, v in r.timings.items())
    med_classes, med_sources = r.random_median
    sources = r.total.sources > 1

    def cov(classes: float, srcs: float) -> str:
        return f"{classes:g} classes" + (f", {srcs:g} sources" if sources else "")

    print(
        f"geal demo: picked {r.budget} of {r.pool_size} images of the {r.pool_name} pool "
        f"to annotate first ({r.model} stage {r.stage}, {r.strategy}) in {total:.1f} s"
    )
    print(f"  time:     {steps}")
    print(
        f"  covers:   {cov(r.selected.classes, r.selected.sources)} "
        f"(of {cov(r.total.classes, r.total.sources)} in the pool)"
    )
    print(
        f"  random:   {cov(r.random.classes, r.random.sources)} (seed {r.seed}); "
        f"median of {len(r.random_runs)} random picks {cov(med_classes, med_sources)}"
    )
    lists = [f for f in r.files if f.suffix in (".txt", ".json", ".csv")]
    print(f"  files:    {', '.join(str(f) for f in lists)}")
    print(f"  report:   {r.report_html} (open in a browser)  {r.report_png}  {r.report_md}")
    print("your own images:  geal run ./images --budget N --to ultralytics --out sel/")
    print("                  (the default model downloads DINO weights once; with no network add")
    print(f"                  --model {r.model}, the model this demo used)")
    return 0


COMMANDS = {
    "extract": cmd_extract,
    "select": cmd_select,
    "export": cmd_export,
    "run": cmd_run,
    "report": cmd_report,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(a.verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # without a terminal, loops over the pool log periodic progress lines (geal.progress)
    logging.getLogger("geal.progress").setLevel(min(level, logging.INFO))
    t0 = time.perf_counter()
    try:
        code = COMMANDS[a.command](a)
    except GealError as e:
        print(f"geal: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `geal ... | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("geal: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError) as e:
        print(f"geal: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno in (28,):  # ENOSPC
            print(f"geal: error: no space left on device ({e.filename or ''})", file=sys.stderr)
            return 2
        raise
    log.debug("%s took %.2f s", a.command, time.perf_counter() - t0)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
