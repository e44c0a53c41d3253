"""``geal select``: rank a bank's images and write the selection directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from geal.cli.common import (
    check_select_args,
    common_args,
    json_flag,
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
        "select",
        help="rank a bank's images and write the selection",
        description="Rank the pool from a pattern bank; write ranking.csv, "
        "selection.json and the split files asked with --to.",
    )
    p.add_argument("bank", help="pattern bank directory made by `geal extract`")
    select_args(p)
    common_args(p)
    json_flag(p)
    p.add_argument("--pool", default=None, help="the pool, if it moved since extraction")
    p.add_argument("--out", required=True, help="output directory")
    report_flag(p)
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from geal.bank import PatternBank
    from geal.pipeline import parse_budgets, preflight_exports, read_labeled, run_selection
    from geal.selection import check_out_dir, pool_of_bank

    budgets = parse_budgets(a.budget, a.budgets)
    check_out_dir(a.out)
    check_select_args(a)
    bank = PatternBank.open(a.bank)
    pool = pool_of_bank(bank, a.pool)
    preflight_exports(pool, to_list(a.to), a.name)
    labeled = read_labeled(a.labeled, pool) if a.labeled else None
    res = run_selection(
        bank,
        pool,
        a.out,
        budgets,
        labeled=labeled,
        **select_kwargs(a),
        extra={"bank": str(Path(a.bank).resolve())},
    )
    print_replaced(a.out, res.removed)
    a.result = selection_result(a, res, bank.n)
    print(
        f"selected {max(budgets)} of {bank.n} images with {a.strategy} in {res.seconds:.1f} s -> {a.out}"
    )
    if a.report:
        write_report(a, pool, bank)
    return 0
