"""The jobs behind the CLI: extract (cached), select, export, as library functions.

``cli.py`` only parses arguments and prints; everything it runs lives here so that a
notebook or a pipeline can do exactly what the command line does.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geal.bank import PatternBank
from geal.coverage import DEFAULT_CHUNK
from geal.errors import GealError, PoolError, SelectionError
from geal.pools import Pool, open_pool
from geal.sampling import DEFAULT_STRATEGY, SAMPLERS, Ranking, RunSettings, select

log = logging.getLogger(__name__)

JOURNAL = ".ranking.journal"


def parse_budgets(budget: int | None, budgets: str | Sequence[int] | None) -> list[int]:
    """``--budget N`` and/or ``--budgets a,b,c`` -> sorted unique positive budgets."""
    out: set[int] = set()
    if budget is not None:
        out.add(int(budget))
    if budgets:
        items = budgets.split(",") if isinstance(budgets, str) else list(budgets)
        for b in items:
            try:
                out.add(int(str(b).strip()))
            except ValueError:
                raise SelectionError(
                    f"--budgets takes integers separated by commas, got {b!r}"
                ) from None
    if not out:
        raise SelectionError("give --budget N or --budgets N1,N2,...")
    if min(out) < 1:
        raise SelectionError("budgets must be positive")
    return sorted(out)


def read_labeled(path: str | Path, pool: Pool) -> list[int]:
    """Pool indices of the ids listed in ``path`` (one per line; ``#`` comments allowed)."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise SelectionError(f"cannot read labeled file {p}: {e.strerror or e}") from None
    ids = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    out = []
    for image_id in ids:
        try:
            out.append(pool.index_of(image_id))
        except PoolError:
            raise SelectionError(
                f"labeled file {p} names {image_id!r}, which is not in the pool"
            ) from None
    return out


def pool_of_bank(bank: PatternBank, pool_path: str | Path | None = None, fmt: str = "auto") -> Pool:
    """Reopen the pool a bank was made from (or ``pool_path``), checking it still matches."""
    info = bank.manifest.get("pool", {})
    root = pool_path or info.get("root")
    if not root:
        raise GealError("this bank does not record its pool; pass --pool PATH")
    pool = open_pool(
        root, info.get("format", fmt) if pool_path is None else fmt, split=info.get("split")
    )
    if info.get("limit"):  # the bank was made from the pool's first images
        pool = pool.head(int(info["limit"]))
    if len(pool) != bank.n:
        raise GealError(f"pool {root} has {len(pool)} images but the bank has {bank.n}; re-extract")
    if info.get("fingerprint") and pool.fingerprint() != info["fingerprint"]:
        log.warning("pool %s changed since the bank was made; ids are matched by position", root)
    return pool


@dataclass
class SelectionResult:
    rankings: dict[int, Ranking]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ranking(self) -> Ranking:
        return self.rankings[max(self.rankings)]


def run_selection(
    bank: PatternBank,
    pool: Pool,
    out: str | Path,
    budgets: list[int],
    *,
    strategy: str = DEFAULT_STRATEGY,
    seed: int = 0,
    labeled: Sequence[int] | None = None,
    distance: str = "cosine",
    to: Sequence[str] = (),
    name: str = "geal",
    device: str = "cpu",
    chunk: int = DEFAULT_CHUNK,
    prune: str = "auto",
    progress: bool | None = None,
    extra: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> SelectionResult:
    """Rank the pool, then write ranking.csv, selection.json and the asked split files.

    Nested samplers run once at the largest budget and every smaller budget is a prefix;
    the others run once per budget.
    """
    from geal.export import EXPORTERS, write_selection_json

    if strategy not in SAMPLERS:
        raise SelectionError(f"unknown strategy {strategy!r}; known: {', '.join(sorted(SAMPLERS))}")
    for fmt in to:
        if fmt not in EXPORTERS or fmt == "csv":
            raise SelectionError(
                f"unknown export format {fmt!r}; known: {', '.join(k for k in EXPORTERS if k != 'csv')}"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    journal = out / JOURNAL
    run = RunSettings(device=device, chunk=chunk, prune=prune, progress=progress)
    logged = dataclasses.replace(run, journal=journal, journal_key={"bank": bank.manifest_hash()})
    params = dict(params or {})
    top = select(
        bank,
        budgets[-1],
        strategy,
        seed=seed,
        labeled=labeled,
        distance=distance,
        run=logged,
        **params,
    )
    rankings = {budgets[-1]: top}
    if not top.nested:
        for b in budgets[:-1]:
            rankings[b] = select(
                bank, b, strategy, seed=seed, labeled=labeled, distance=distance, run=run, **params
            )
    seconds = time.perf_counter() - t0
    files: list[Path] = []
    files += EXPORTERS["csv"](pool, top, len(top), out, name=name)
    for b in budgets:
        r = rankings.get(b, top)
        for fmt in to:
            files += EXPORTERS[fmt](pool, r, b, out, name=name)
    info = {"select_seconds": round(seconds, 3), "labeled": len(labeled or [])}
    info.update(extra or {})
    files.append(
        write_selection_json(
            out,
            top,
            budgets,
            bank_manifest_hash=bank.manifest_hash(),
            pool=pool,
            extra=info,
            files=files,
        )
    )
    journal.unlink(missing_ok=True)
    return SelectionResult(rankings, files, seconds)


def read_selection(out: str | Path) -> tuple[dict[str, Any], Ranking]:
    """Read back ``selection.json`` and ``ranking.csv`` written by :func:`run_selection`."""
    out = Path(out)
    sel_path, csv_path = out / "selection.json", out / "ranking.csv"
    for p in (sel_path, csv_path):
        if not p.exists():
            raise GealError(f"{out} holds no selection ({p.name} missing); run `geal select` first")
    try:
        meta = json.loads(sel_path.read_text())
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        order = np.array([int(r["index"]) for r in rows], np.int64)
        radius = np.array([float(r["radius"]) if r["radius"] else np.nan for r in rows], np.float32)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise GealError(f"cannot read the selection in {out}: {e}") from None
    ranking = Ranking(
        order,
        radius,
        meta.get("strategy", "?"),
        int(meta.get("seed", 0)),
        meta.get("params", {}),
        bool(meta.get("nested", True)),
        meta.get("why_not_nested"),
    )
    return meta, ranking
