"""``geal demo``: the main job on an embedded real pool, with a report."""

from __future__ import annotations

import argparse
from typing import Any

from geal.cli.common import common_args, progress_flag


def add_parser(sub: Any) -> None:
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
    common_args(p)
    p.add_argument("--out", default="geal-demo", help="output directory (default ./geal-demo)")
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from geal.demo import run_demo

    r = run_demo(
        a.out,
        pool=a.pool,
        budget=a.budget,
        strategy=a.strategy,
        seed=a.seed,
        device=a.device,
        limit=a.limit,
        progress=progress_flag(a),
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
        f"  random:   {cov(r.random.classes, r.random.sources)} (seed {r.random_seed}); "
        f"median of {len(r.random_runs)} random picks {cov(med_classes, med_sources)}"
    )
    lists = [f for f in r.files if f.suffix in (".txt", ".json", ".csv")]
    print(f"  files:    {', '.join(str(f) for f in lists)}")
    print(f"  report:   {r.report_html} (open in a browser)  {r.report_png}  {r.report_md}")
    print("your own images:  geal run ./images --budget N --to ultralytics --out sel/")
    print("                  (the default model downloads DINO weights once; with no network add")
    print(f"                  --model {r.model}, the model this demo used)")
    return 0
