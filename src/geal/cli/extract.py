"""``geal extract``: a pool's knowledge clusters into a pattern bank."""

from __future__ import annotations

import argparse
from typing import Any

from geal.cli.common import (
    common_args,
    extract_args,
    extract_kwargs,
    extract_result,
    json_flag,
    pool_args,
    print_failed,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "extract",
        help="extract a pool's knowledge clusters into a pattern bank",
        description="One forward pass per image -> knowledge clusters -> bank on disk. "
        "Resumes an interrupted bank at the same --out.",
    )
    pool_args(p)
    extract_args(p)
    common_args(p)
    json_flag(p)
    p.add_argument(
        "--out",
        default=None,
        help="bank directory (default: a cache dir keyed by pool and options)",
    )
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from geal.extract import extract
    from geal.pools import open_pool

    pool = open_pool(a.pool, a.format, split=a.split)
    _, summary = extract(pool, a.out, **extract_kwargs(a))
    print_failed(summary)
    print(summary.line())
    a.result = {"extract": extract_result(summary)}
    return 0
