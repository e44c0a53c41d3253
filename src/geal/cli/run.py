"""``geal run``: extract (reusing a cached bank), select and export in one command."""

from __future__ import annotations

import argparse
from typing import Any

from geal.cli.common import (
    check_select_args,
    common_args,
    extract_args,
    extract_kwargs,
    extract_result,
    json_flag,
    pool_args,
    print_failed,
    print_replaced,
    report_flag,
    select_args,
    select_kwargs,
    selection_result,
    to_list,
    write_report,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="extract (cached), select and export in one command",
        description="Extract (reusing a matching cached bank), select and export.",
    )
    pool_args(p)
    extract_args(p)
    select_args(p)
    common_args(p)
    json_flag(p)
    p.add_argument(
        "--bank", default=None, help="bank directory (default: cache dir keyed by pool and options)"
    )
    p.add_argument("--out", required=True, help="output directory")
    report_flag(p)
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from geal.errors import SelectionError
    from geal.extract import extract
    from geal.pipeline import parse_budgets, preflight_exports, read_labeled, run_selection
    from geal.pools import open_pool
    from geal.selection import check_out_dir

    # everything that can be checked is checked before the forward pass
    budgets = parse_budgets(a.budget, a.budgets)
    check_out_dir(a.out)
    check_select_args(a)
    pool = open_pool(a.pool, a.format, split=a.split)
    if max(budgets) > len(pool):
        raise SelectionError(f"budget {max(budgets)} is larger than the pool ({len(pool)} images)")
    preflight_exports(pool, to_list(a.to), a.name)
    labeled = read_labeled(a.labeled, pool) if a.labeled else None
    bank, summary = extract(pool, a.bank, **extract_kwargs(a))
    print_failed(summary)
    print(f"extract: {summary.line()}")
    res = run_selection(
        bank,
        pool,
        a.out,
        budgets,
        labeled=labeled,
        **select_kwargs(a),
        extra={"bank": str(summary.bank), "extract_seconds": round(summary.seconds, 3)},
    )
    print(f"select: {max(budgets)} of {bank.n} images with {a.strategy} in {res.seconds:.1f} s")
    a.result = {"extract": extract_result(summary), **selection_result(a, res, bank.n)}
    print_replaced(a.out, res.removed)
    for f in res.files:
        print(f"wrote {f}")
    if a.report:
        write_report(a, pool, bank)
    return 0
