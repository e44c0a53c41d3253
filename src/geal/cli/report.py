"""``geal report``: an HTML page showing a selection, optionally with its screenshot."""

from __future__ import annotations

import argparse
from typing import Any

from geal.cli.common import progress_flag


def add_parser(sub: Any) -> None:
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
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
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
        progress=progress_flag(a),
    )
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    if a.screenshot:
        print(f"wrote {screenshot(path, a.screenshot)}")
    return 0
