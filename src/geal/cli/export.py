"""``geal export``: split files for a selection made earlier."""

from __future__ import annotations

import argparse
from typing import Any

from geal.cli.common import SPLIT_FORMATS, to_list


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write split files for a selection made earlier",
        description="Write split files from a selection directory (ranking.csv + selection.json).",
    )
    p.add_argument("dir", help="selection directory written by `geal select` or `geal run`")
    p.add_argument("--to", required=True, help=f"{SPLIT_FORMATS} (comma list)")
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
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from geal.pipeline import export_selection

    written = export_selection(
        a.dir,
        to_list(a.to),
        budget=a.budget,
        pool_path=a.pool,
        fmt=a.format,
        name=a.name,
        out=a.out,
    )
    for f in written:
        print(f)
    return 0
